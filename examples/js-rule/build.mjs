// Builds examples/js-rule/src/rule.js into a WebAssembly component (js-rule.wasm, or the path
// given as the first argument) with the componentize-js Node API, against the project's WIT.
// Run through build.sh (which does `npm ci` first).

import { componentize } from '@bytecodealliance/componentize-js';
import { writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const out = resolve(process.argv[2] ?? join(here, 'js-rule.wasm'));
const t0 = Date.now();
const { component } = await componentize({
  sourcePath: join(here, 'src', 'rule.js'),
  witPath: join(here, '..', '..', 'wit'),
  worldName: 'office-check',
  // The host grants no clocks, randomness or network (ARCHITECTURE.md invariants); stdio
  // stays so that an uncaught exception's message reaches the host's trap report.
  disableFeatures: ['random', 'clocks', 'http', 'fetch-event'],
});
await writeFile(out, component);
console.log(`wrote ${out} (${component.byteLength} bytes) in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
