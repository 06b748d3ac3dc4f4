"""The context layer: risk carries across windows, fades, and the prompt counts."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from guard.context import combine
from guard.policy.schema import ContextSpec

P = st.floats(0.0, 1.0)


@given(w=P, r=P, p=P)
def test_effective_is_at_least_the_window_and_at_most_one(w, r, p):
    eff, risk = combine(np.array([w]), np.array([r]), np.array([p]), ContextSpec())
    assert w - 1e-9 <= eff[0] <= 1.0 + 1e-9
    assert risk[0] >= w - 1e-9


def test_two_borderline_windows_escalate_and_risk_fades():
    spec = ContextSpec(decay=0.5, prompt_weight=0.5)
    e1, r1 = combine(np.array([0.6]), None, None, spec)
    e2, r2 = combine(np.array([0.6]), r1, None, spec)
    assert e1[0] == 0.6 and e2[0] > 0.7
    _, r3 = combine(np.array([0.0]), r2, None, spec)
    assert r3[0] == 0.5 * r2[0]


def test_harmful_prompt_raises_borderline_answer():
    spec = ContextSpec(decay=0.5, prompt_weight=0.5)
    alone, _ = combine(np.array([0.6]), None, None, spec)
    with_prompt, _ = combine(np.array([0.6]), None, np.array([0.9]), spec)
    assert with_prompt[0] > alone[0]


def test_overlapping_windows_do_not_compound_one_sentence():
    """Four windows over one borderline sentence (0.6) became 0.72 and crossed a 0.7 threshold."""
    from guard.context import Carry

    spec = ContextSpec(decay=0.5, prompt_weight=0.5)
    carry, effs = Carry(), []
    for start in range(0, 64, 16):  # 64-character windows every 16: each overlaps the last three
        eff, carry = carry.step(np.array([0.6]), start, start + 64, None, spec)
        effs.append(float(eff[0]))
    assert effs == [0.6, 0.6, 0.6, 0.6]
    eff, carry = carry.step(np.array([0.6]), 64, 128, None, spec)  # the first has left view
    assert eff[0] > 0.7 and carry.risk is not None


@given(st.lists(P, min_size=1, max_size=12), st.integers(1, 64))
def test_carried_risk_only_holds_windows_that_ended_before_the_current_began(scores, stride):
    from guard.context import Carry

    spec = ContextSpec(decay=0.5, prompt_weight=0.0)
    carry = Carry()
    for i, s in enumerate(scores):
        start = i * stride
        eff, carry = carry.step(np.array([s]), start, start + 64, None, spec)
        gone = [scores[j] for j in range(i) if j * stride + 64 <= start]
        assert (carry.risk is None) == (not gone)
        if gone:
            assert carry.risk[0] >= max(gone) * 0.5 ** len(gone) - 1e-12 and eff[0] >= s - 1e-12
        assert len(carry.recent) <= 64 // stride + 1
