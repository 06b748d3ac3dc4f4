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
