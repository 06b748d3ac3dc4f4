"""The context layer: stream-level risk that carries across windows, and the prompt.

A window alone can miss harm that builds up over several windows, and a harmful request makes a
borderline answer more likely harmful. Each category's effective score is the noisy-OR of the
current window, the decayed maximum of earlier windows and the prompt's score, each weighted:

    effective = 1 - (1 - window) * (1 - decay * risk) * (1 - prompt_weight * prompt)
    risk'     = max(window, decay * risk)

Neither "last window only" nor "whole history forever": old risk fades geometrically.
"""

from __future__ import annotations

import numpy as np

from guard.policy.schema import ContextSpec


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
