"""The context layer: stream-level risk that carries across windows, and the prompt.

A window alone can miss harm that builds up over several windows, and a harmful request makes a
borderline answer more likely harmful. Each category's effective score is the noisy-OR of the
current window, the decayed maximum of earlier windows and the prompt's score, each weighted:

    effective = 1 - (1 - window) * (1 - decay * risk) * (1 - prompt_weight * prompt)
    risk'     = max(window, decay * risk)

Neither "last window only" nor "whole history forever": old risk fades geometrically.

The noisy-OR treats its terms as independent evidence, and windows overlap (64 tokens every 16):
a window and the one before it share three quarters of their text. So only windows that ended
before the current one begins join ``risk`` (``Carry``); one borderline sentence, seen by four
overlapping windows, no longer compounds against itself (0.6 for a sentence became 0.72 and
crossed a 0.7 threshold).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from guard.policy.schema import ContextSpec


@dataclass(frozen=True)
class Carry:
    """What earlier windows leave to the next: ``risk``, the decayed maximum over windows whose
    text has left view, and ``recent``, the (end offset, scores) of windows that may still overlap."""

    risk: np.ndarray | None = None
    recent: tuple[tuple[int, np.ndarray], ...] = ()

    def step(self, window: np.ndarray, start: int, end: int, prompt: np.ndarray | None,
             spec: ContextSpec) -> tuple[np.ndarray, Carry]:
        """The effective scores of the window spanning ``[start, end)`` (windows come in text
        order), and what it leaves to the next."""
        risk = self.risk
        recent: list[tuple[int, np.ndarray]] = []
        for e, s in self.recent:
            if e <= start:
                risk = s if risk is None else np.maximum(s, spec.decay * risk)
            else:
                recent.append((e, s))
        eff, _ = combine(window, risk, prompt, spec)
        recent.append((end, np.clip(np.asarray(window, np.float64), 0.0, 1.0)))
        return eff, Carry(risk, tuple(recent))


def combine(window: np.ndarray, risk: np.ndarray | None, prompt: np.ndarray | None,
            spec: ContextSpec) -> tuple[np.ndarray, np.ndarray]:
    """Return (effective scores, updated risk) for one window; inputs are ``[C]`` probabilities."""
    w = np.clip(window.astype(np.float64), 0.0, 1.0)
    keep = np.ones_like(w) - w
    if risk is not None and risk.size:
        keep *= 1.0 - spec.decay * risk
        new_risk = np.maximum(w, spec.decay * risk)
    else:
        new_risk = w
    if prompt is not None and prompt.size:
        keep *= 1.0 - spec.prompt_weight * prompt
    return 1.0 - keep, new_risk
