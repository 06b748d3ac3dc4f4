"""benchmarks.quality's report: the harmless-rows-flagged table compares systems on the same rows."""

import numpy as np

from benchmarks.quality import markdown
from guard import evaluation as ev
from guard.types import CATEGORIES


def test_flagged_table_lists_the_benign_sources_for_every_system() -> None:
    hate = CATEGORIES.index("hate")
    known = np.zeros((4, len(CATEGORIES)), bool)
    known[:, hate] = True
    y = np.zeros_like(known, dtype=np.float64)
    y[3, hate] = 1
    sources = np.array(["news", "news", "news", "forum"])
    thr = [0.5] * len(CATEGORIES)
    systems = {}
    for name, flagged_rows in (("a", [0]), ("b", [])):
        s = np.zeros_like(y)
        s[flagged_rows, hate] = 0.9
        s[3, hate] = 0.9
        systems[name] = {"report": ev.evaluate_scores(s, y, known, thr), "windows_per_s": 1.0,
                         "by_source": ev.by_source(s, y, known, sources, thresholds=thr)}
    md = markdown({"command": "c", "git": "g", "texts": 4, "windows": 4, "systems": systems})
    assert "| news | 3 | 33.3 % | 0.0 % |" in md
    assert "| forum |" not in md  # it has a harmful row: not a benign source


def test_policy_fires_gates_blocklist_weights_like_decide() -> None:
    from benchmarks.quality import policy_fires
    from guard.policy.schema import PolicySpec

    spec = PolicySpec.model_validate({"policy": "p", "principles": [
        {"id": "s", "text": "t", "categories": ["sexual"], "threshold": 0.8, "action": "block"},
        {"id": "p", "text": "t", "categories": ["profanity"], "detectors": ["lexical"], "action": "redact"}]})
    sem = np.zeros((3, len(CATEGORIES)))
    lex = np.zeros_like(sem)
    s, p = CATEGORIES.index("sexual"), CATEGORIES.index("profanity")
    lex[0, s], sem[1, s], lex[2, p], sem[2, p] = 0.4, 0.9, 0.5, 0.99
    every, gated = policy_fires(spec, sem, lex, False), policy_fires(spec, sem, lex, True)
    assert every[:, s].tolist() == [True, True, False] and gated[:, s].tolist() == [False, True, False]
    # profanity's principle is lexical only: its semantic score fires nothing
    assert every[2, p] and gated[2, p] and not gated[:2, p].any()
