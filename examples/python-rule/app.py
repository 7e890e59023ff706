"""An office-check rule plugin for tenken written in Python, built into a WebAssembly component
with componentize-py against the project's WIT (world `office-check`).

Rules (receipt level, on the SY 傷病名 records' 主傷病 field, CSV index 6):
- diagnosis.py.primary-missing  (warning): a receipt with 傷病名 but none marked 主傷病 (01).
- diagnosis.py.primary-multiple (warning): more than one 主傷病; one finding on each 主傷病
  after the first.
A receipt with no SY at all is left to `diagnosis.missing` of the default rule pack.

Its Rust twin (plugins/twin-python-rule) produces exactly the same findings; the tests
(tests/all/languages.rs) hold both to that.

How WIT maps to Python here: `componentize-py bindings` generates the `wit_world` package
(dataclasses with snake_case fields, `Optional[...]` for `option<T>`, `Enum`s), and the
exported interface `checker` is the class `Checker` below.
"""

from typing import List

from wit_world import exports
from wit_world.imports import types as t

PLUGIN_NAME = "example-python-rule"
PLUGIN_VERSION = "1.0.0"

RULES = [
    t.RuleInfo(
        id="diagnosis.py.primary-missing",
        severity=t.Severity.WARNING,
        description="傷病名はあるが主傷病 (01) の傷病名がない",
    ),
    t.RuleInfo(
        id="diagnosis.py.primary-multiple",
        severity=t.Severity.WARNING,
        description="主傷病 (01) の傷病名が 2 件以上ある",
    ),
]


def check_receipt(r: t.Receipt, out: List[t.Finding]) -> None:
    if not r.diagnoses:
        return
    primaries = [d for d in r.diagnoses if d.primary]
    if not primaries:
        out.append(
            t.Finding(
                rule="diagnosis.py.primary-missing",
                severity=t.Severity.WARNING,
                message="主傷病 (SY 主傷病 = 01) の傷病名がありません: 主たる傷病に 01 を記録してください",
                receipt=r.number,
                line=r.line,
                record="RE",
                field=None,
            )
        )
        return
    first = primaries[0]
    for d in primaries[1:]:
        out.append(
            t.Finding(
                rule="diagnosis.py.primary-multiple",
                severity=t.Severity.WARNING,
                message=f"主傷病 (01) が {len(primaries)} 件あります: {first.line} 行目の傷病名のほかは主傷病を外してください",
                receipt=r.number,
                line=d.line,
                record="SY",
                field=6,
            )
        )


class Checker(exports.Checker):
    def describe(self) -> t.PluginInfo:
        return t.PluginInfo(name=PLUGIN_NAME, version=PLUGIN_VERSION, rules=RULES)

    def check_file(self, ctx: t.CheckContext, file: t.FileView) -> List[t.Finding]:
        return []

    def check_receipts(self, ctx: t.CheckContext, receipts: List[t.Receipt]) -> List[t.Finding]:
        out: List[t.Finding] = []
        for r in receipts:
            check_receipt(r, out)
        return out
