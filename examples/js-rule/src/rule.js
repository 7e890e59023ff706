// An office-check rule plugin for tenken, written in JavaScript and built into a WebAssembly
// component with componentize-js against the project's WIT (world `office-check`).
//
// Rules (receipt level, all on SY 傷病名 records):
// - diagnosis.js.uncoded-no-name  (error):   未コード化傷病名 0000999 without a 傷病名称.
// - diagnosis.js.suspected-open   (warning): a 疑い病名 (a 修飾語 whose master name contains
//   「疑い」, e.g. 8002 「の疑い」 in the SSK master) still open (転帰区分 1 or blank) when
//   it started more than 2 months before the receipt's 診療年月.
//
// Its Rust twin (plugins/twin-js-rule) produces exactly the same findings; the tests
// (tests/all/languages.rs) hold both to that.
//
// How WIT maps to JavaScript here: records are plain objects with camelCase fields,
// `option<T>` is the value or `undefined`, enums are their kebab-case names as strings,
// variants are `{ tag, val }`, `u64` is a BigInt, and the exported interface `checker` is an
// object of functions named in camelCase.

import { lookup } from 'tenken:plugin/master@1.0.0';

const PLUGIN = { name: 'example-js-rule', version: '1.0.0' };

const RULES = [
  {
    id: 'diagnosis.js.uncoded-no-name',
    severity: 'error',
    description: '未コード化傷病名 (0000999) に傷病名称がない',
  },
  {
    id: 'diagnosis.js.suspected-open',
    severity: 'warning',
    description: '疑い病名が診療年月の 2 か月より前から転帰なし (継続) のまま',
  },
];

/** `YYYY-MM-DD`, as the Rust twin prints a date. */
function fmtDate(d) {
  const p = (n, w) => String(n).padStart(w, '0');
  return `${p(d.year, 4)}-${p(d.month, 2)}-${p(d.day, 2)}`;
}

function finding(rule, severity, receipt, line, field, message) {
  return { rule, severity, message, receipt, line, record: 'SY', field };
}

/**
 * Whether any 4-character 修飾語 code in `modifiers` is a 疑い modifier, asking the host's
 * 修飾語 master (as it applied on `on`). `cache` keeps the answers of this call.
 */
function hasSuspectedModifier(modifiers, on, cache) {
  for (let i = 0; i + 4 <= modifiers.length; i += 4) {
    const code = modifiers.slice(i, i + 4);
    let suspected = cache.get(code);
    if (suspected === undefined) {
      const r = lookup('modifier', code, on);
      suspected = r.tag === 'in-force' && r.val.name.includes('疑い');
      cache.set(code, suspected);
    }
    if (suspected) return true;
  }
  return false;
}

function checkReceipt(r, out, caches) {
  const no = r.number;
  for (const d of r.diagnoses) {
    if (d.code === '0000999' && d.name === '') {
      out.push(
        finding(
          'diagnosis.js.uncoded-no-name',
          'error',
          no,
          d.line,
          5,
          '未コード化傷病名 (0000999) には傷病名称を記録してください',
        ),
      );
    }
    const sm = r.serviceMonth;
    const start = d.startDate;
    if (sm === undefined || start === undefined) continue;
    if (d.outcome !== '1' && d.outcome !== '') continue;
    const months = sm.year * 12 + sm.month - (start.year * 12 + start.month);
    if (months <= 2 || d.modifiers === '') continue;
    const key = `${sm.year}-${sm.month}`;
    let cache = caches.get(key);
    if (cache === undefined) {
      cache = new Map();
      caches.set(key, cache);
    }
    const on = { year: sm.year, month: sm.month, day: 1 };
    if (!hasSuspectedModifier(d.modifiers, on, cache)) continue;
    out.push(
      finding(
        'diagnosis.js.suspected-open',
        'warning',
        no,
        d.line,
        2,
        `疑い病名 ${d.code} (修飾語 ${d.modifiers}) が診療開始日 ${fmtDate(start)} から ${months} か月、転帰なし (継続) のままです`,
      ),
    );
  }
}

export const checker = {
  describe() {
    return { name: PLUGIN.name, version: PLUGIN.version, rules: RULES };
  },

  checkFile(_ctx, _file) {
    return [];
  },

  checkReceipts(_ctx, receipts) {
    const out = [];
    const caches = new Map();
    for (const r of receipts) checkReceipt(r, out, caches);
    return out;
  },
};
