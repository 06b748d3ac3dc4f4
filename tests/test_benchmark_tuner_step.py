"""The tuner-step benchmark measures ``observe`` in the checkout it is pointed at."""

from __future__ import annotations

from pathlib import Path

from benchmarks import tuner_step

REPO = Path(__file__).resolve().parents[1]


def test_probe_times_one_batch_per_size_in_the_given_checkout():
    out = tuner_step.probe(REPO, (10, 1000))
    assert set(out) == {10, 1000} and all(0 < s < 60 for s in out.values())
