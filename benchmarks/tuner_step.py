"""What one feedback batch costs the tuner's pure core (``guard.tuning.observe``) as the verdict
identities it remembers grow: side by side for two checkouts, alternating (ABAB), in one run.

The tuner keeps every verdict identity of the last ``GUARD_TUNER_DECISION_TTL_S`` (a day by
default), so at a dozen verdicts per second it holds about a million; ``observe`` returns a new
state per batch, and how it copies what it holds is the whole cost. A batch here is 500 verdicts,
half on indexed decisions (new identities), half unknown.

    python -m benchmarks.tuner_step --trees OLD_CHECKOUT . --out benchmarks/results/tuner-step.json
"""

from __future__ import annotations

import sys
from pathlib import Path

from benchmarks.side_by_side import alternate, medians, parser, ratios, record, run_probe, write

SIZES = (10_000, 100_000, 1_000_000)
ROUNDS = 4

#: run inside one checkout: prints {size: seconds per batch}
_PROBE = r"""
import json, sys, time
from types import MappingProxyType
from guard.messages import Decision, Feedback
from guard.thresholds import Thresholds, TuningSpec
from guard.tuning import DecisionRecord, FeedbackCounts, TunerState, observe

out = {}
spec = TuningSpec()
for n in map(int, sys.argv[1:]):
    seen = MappingProxyType({(f"old-{i}:0", "hate"): 1 for i in range(n)})
    state = TunerState(MappingProxyType({}), seen, FeedbackCounts())
    records = {}
    batch = []
    for i in range(500):
        did = f"new-{i}:0"
        if i % 2 == 0:
            records[did] = DecisionRecord(decision_id=did, policy="default", tenant=None, ts_ms=1,
                                          thresholds_version=0, scores=MappingProxyType({"hate": 0.9}),
                                          semantic=frozenset({"hate"}), other=frozenset())
        batch.append(Feedback(decision_id=did, stream_id=f"new-{i}", category="hate",
                              verdict="false_positive", source="r", ts_ms=1))
    thresholds = Thresholds.from_defaults({("default", "hate"): 0.5})
    times = []
    for _ in range(5):
        t = time.perf_counter()
        observe(state, batch, records, thresholds, {("default", "hate"): spec}, 2)
        times.append(time.perf_counter() - t)
    out[n] = sorted(times)[2]
print(json.dumps(out))
"""


def probe(tree: Path, sizes: tuple[int, ...]) -> dict[int, float]:
    return {int(k): v for k, v in run_probe(tree, _PROBE, *map(str, sizes)).items()}


def main(argv: list[str] | None = None) -> int:
    args = parser(__doc__, ROUNDS).parse_args(argv)
    med = medians(alternate(args.trees, args.rounds, lambda tree: probe(tree, SIZES)))
    ratio = ratios(med)
    result = record("benchmarks.tuner_step", argv, args.trees, rounds=args.rounds,
                    batch="500 verdicts: 250 new identities, 250 unknown decisions",
                    seconds_per_batch={name: {str(n): round(v, 5) for n, v in m.items()} for name, m in med.items()},
                    ratio_new_over_base={str(n): r for n, r in ratio.items()})
    for n in SIZES:
        print(f"{n:>9} identities: base {med['base'][n] * 1000:7.1f} ms  new {med['new'][n] * 1000:7.1f} ms  "
              f"ratio {ratio[n]}")
    write(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
