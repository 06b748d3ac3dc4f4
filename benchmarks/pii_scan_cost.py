"""What one PII scan costs on the text a stream holds (about 600 characters: unreleased text plus
left context), per script, for two checkouts side by side (alternating, each in its own process).

Text that is not ASCII is searched for the digits, dashes and spaces the layer reads as ASCII
(``guard.detectors.pii._NUMERIC_ASCII``) before anything else; this shows what that costs where
there are none, and where there are.

    python -m benchmarks.pii_scan_cost --trees OLD_CHECKOUT . --out benchmarks/results/pii-scan-cost.json
"""

from __future__ import annotations

import sys

from benchmarks.side_by_side import alternate, medians, parser, ratios, record, run_probe, write

ROUNDS = 3

_PROBE = r"""
import json, time
from guard.detectors.pii import PiiScanner
s = PiiScanner()
texts = {
    "english": ("The meeting is at the town hall; please confirm as soon as you can, and bring the forms. " * 8)[:600],
    "french": ("La réunion est prévue à l'hôtel de ville ; merci de confirmer votre présence dès que possible. " * 8)[:600],
    "chinese": ("联系方式：请在工作日拨打客服热线，我们会尽快回复您的问题。订单已经发货，预计三天内送达。" * 12)[:600],
    "typographic numbers": ("Call 415\u2011555\u20112671 or +44\u202f20\u202f7946\u202f0958 between 9\u201317 h. " * 12)[:600],
}
out = {}
for name, t in texts.items():
    for _ in range(200):
        s.scan(t, False)
    t0 = time.perf_counter()
    for i in range(2000):
        s.scan(t[: 400 + i % 200], False)
    out[name] = (time.perf_counter() - t0) / 2000
print(json.dumps(out))
"""


def main(argv: list[str] | None = None) -> int:
    args = parser(__doc__, ROUNDS).parse_args(argv)
    med = medians(alternate(args.trees, args.rounds, lambda t: run_probe(t, _PROBE)))
    ratio = ratios(med)
    result = record("benchmarks.pii_scan_cost", argv, args.trees, rounds=args.rounds,
                    microseconds_per_scan={n: {t: round(v * 1e6, 1) for t, v in m.items()} for n, m in med.items()},
                    ratio_new_over_base=ratio)
    for t in med["new"]:
        print(f"{t:20} base {med['base'][t] * 1e6:7.1f} us  new {med['new'][t] * 1e6:7.1f} us  ratio {ratio[t]}")
    write(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
