"""guard eval: metrics against hand-computed values, the any-rule, and the report schema."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from guard import evaluation as ev
from guard.devenv.triton import TritonServer
from guard.types import CATEGORIES, Window

BLOCK_KEYS = {"auprc", "precision", "recall", "f1", "threshold", "n",
              "recall_at_1pct_fpr", "recall_at_5pct_fpr"}


class TestAveragePrecision:
    def test_hand_computed(self) -> None:
        # ranked: + - + - +  → P at each positive: 1, 2/3, 3/5; each adds recall 1/3
        y = np.array([1, 0, 1, 0, 1])
        s = np.array([0.9, 0.8, 0.7, 0.6, 0.2])
        assert ev.average_precision(y, s) == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)

    def test_ties_are_one_threshold(self) -> None:
        # all tied: one operating point, P = 0.5 at R = 1 (scikit-learn gives 0.5 too)
        assert ev.average_precision(np.array([1, 0]), np.array([0.5, 0.5])) == pytest.approx(0.5)
        # a tie between a positive and a negative at the top
        y, s = np.array([1, 0, 1]), np.array([0.9, 0.9, 0.1])
        assert ev.average_precision(y, s) == pytest.approx(0.5 * 0.5 + 0.5 * 2 / 3)

    def test_perfect_and_undefined(self) -> None:
        assert ev.average_precision(np.array([0, 1, 1]), np.array([0.1, 0.8, 0.9])) == 1.0
        assert ev.average_precision(np.array([0, 0]), np.array([0.1, 0.2])) is None

    def test_matches_sklearn_on_random_data(self) -> None:
        sk = pytest.importorskip("sklearn.metrics")
        rng = np.random.default_rng(0)
        y = rng.random(500) < 0.2
        s = np.round(rng.random(500) + 0.5 * y, 2)  # rounding makes ties
        assert ev.average_precision(y, s) == pytest.approx(sk.average_precision_score(y, s))


def test_recall_at_fpr() -> None:
    # positives 0.99, 0.95, 0.5 and one tied with the 99 negatives at 0.0; one negative at 0.9
    y = np.array([1, 1, 1, 1] + [0] * 100)
    s = np.array([0.99, 0.95, 0.5, 0.0] + [0.9] + [0.0] * 99)
    assert ev.recall_at_fpr(y, s, 0.0) == pytest.approx(0.5)  # above the top negative
    assert ev.recall_at_fpr(y, s, 0.01) == pytest.approx(0.75)  # one FP of 100 allowed
    assert ev.recall_at_fpr(y, s, 0.05) == pytest.approx(0.75)  # the 0.0 tie lets all 100 in
    assert ev.recall_at_fpr(y, s, 1.0) == pytest.approx(1.0)
    assert ev.recall_at_fpr(np.ones(3), np.ones(3), 0.01) is None


def test_prf_and_best_threshold() -> None:
    y = np.array([1, 1, 0, 0])
    s = np.array([0.9, 0.4, 0.6, 0.1])
    assert ev.prf(y, s >= 0.5) == pytest.approx((0.5, 0.5, 0.5))
    t, f1 = ev.best_f1_threshold(y, s)
    assert (t, f1) == pytest.approx((0.4, 0.8))


def _labels(rows: Sequence[dict[str, int]]) -> tuple[np.ndarray, np.ndarray]:
    y = np.zeros((len(rows), len(CATEGORIES)), np.float32)
    k = np.zeros_like(y, dtype=bool)
    for i, r in enumerate(rows):
        for c, v in r.items():
            j = CATEGORIES.index(c)
            y[i, j], k[i, j] = v, True
    return y, k


class TestReport:
    def test_any_rule_uses_only_labeled_categories(self) -> None:
        rows = [{"hate": 1}, {"hate": 0}, {"profanity": 0}, {"profanity": 1}]
        y, k = _labels(rows)
        s = np.zeros_like(y)
        s[:, CATEGORIES.index("violence")] = 0.99  # unlabeled everywhere: must not count
        s[0, CATEGORIES.index("hate")] = 0.7
        s[1, CATEGORIES.index("hate")] = 0.2
        s[2, CATEGORIES.index("profanity")] = 0.6  # below its own threshold of 0.8
        s[3, CATEGORIES.index("profanity")] = 0.9
        thr = [0.5] * len(CATEGORIES)
        thr[CATEGORIES.index("profanity")] = 0.8
        rep = ev.evaluate_scores(s, y, k, thr)
        a = rep["any"]
        assert a["n"] == 4 and a["positives"] == 2
        # predicted positive: rows 0 (hate 0.7 >= 0.5) and 3 (profanity 0.9 >= 0.8); row 2's 0.6
        # is above hate's threshold but profanity is what row 2 labels, and 0.6 < 0.8
        assert a["precision"] == 1.0 and a["recall"] == 1.0
        # ranking by the max labeled score: 0.9(+), 0.7(+), 0.6(-), 0.2(-)
        assert a["auprc"] == 1.0
        assert a["threshold"] is None

    def test_unlabeled_categories_are_left_out(self) -> None:
        y, k = _labels([{"hate": 1}, {"hate": 0, "profanity": 1}])
        rep = ev.evaluate_scores(np.full(y.shape, 0.5), y, k, [0.5] * len(CATEGORIES))
        assert set(rep["categories"]) == {"hate", "profanity"}
        assert rep["categories"]["profanity"]["n"] == 1
        assert rep["categories"]["profanity"]["auprc"] == 1.0
        assert rep["categories"]["profanity"]["recall_at_1pct_fpr"] is None  # no negatives

    def test_schema(self) -> None:
        y, k = _labels([{"hate": 1, "violence": 0}, {"hate": 0, "violence": 1}, {"hate": 0}])
        rep = ev.evaluate_scores(np.random.default_rng(1).random(y.shape), y, k, [0.5] * 8)
        assert set(rep) == {"any", "categories"}
        assert BLOCK_KEYS <= set(rep["any"])
        for blk in rep["categories"].values():
            assert BLOCK_KEYS <= set(blk)
            json.dumps(blk)


def test_by_source_flags_benign_rows_with_the_any_rule() -> None:
    rows = [{"hate": 0}, {"hate": 0}, {"hate": 0, "profanity": 0}, {"hate": 1}, {"profanity": 0}]
    y, k = _labels(rows)
    s = np.zeros_like(y)
    h, p = CATEGORIES.index("hate"), CATEGORIES.index("profanity")
    s[0, h] = 0.9                      # benign, flagged
    s[2, p] = 0.9                      # benign, flagged by its other labeled category
    s[3, h] = 0.2                      # harmful, missed
    s[4, h] = 0.9                      # hate is unlabeled for this row: must not flag it
    sources = np.array(["news", "news", "news", "news", "other"])
    out = ev.by_source(s, y, k, sources, thresholds=[0.5] * len(CATEGORIES))
    assert out["news"]["any"] == {"n": 4, "positives": 1, "flagged_negatives": round(2 / 3, 4),
                                  "flagged_positives": 0.0}
    assert out["other"]["any"]["flagged_negatives"] == 0.0
    assert out["other"]["any"]["flagged_positives"] is None
    assert "any" not in ev.by_source(s, y, k, sources)["news"]  # no thresholds, no flag figures
    md = ev.markdown({"any": {}, "categories": {}, "by_source": out})
    assert "| news | 66.7 % | 0.0 % |" in md


class FakeDetector:
    """Scores a window by keyword: 'awful' → hate 0.9, 'damn' → profanity 0.8, else 0.05."""

    name = "fake"
    categories = CATEGORIES
    model_version = "fake-1"

    async def score(self, windows: Sequence[Window]) -> np.ndarray:
        out = np.full((len(windows), len(CATEGORIES)), 0.05, np.float32)
        for i, w in enumerate(windows):
            if "awful" in w.text:
                out[i, CATEGORIES.index("hate")] = 0.9
            if "damn" in w.text:
                out[i, CATEGORIES.index("profanity")] = 0.8
        return out


def test_cli_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    long_benign = " ".join(["a perfectly pleasant sentence about gardening."] * 30)
    rows = [
        {"text": "you are awful people", "labels": {"hate": 1}, "source": "s", "split": "dev"},
        {"text": long_benign + " awful", "labels": {"hate": 1}, "source": "s", "split": "dev"},
        {"text": "what a lovely day", "labels": {"hate": 0, "profanity": 0}, "source": "s", "split": "dev"},
        {"text": "damn that is good", "labels": {"profanity": 1}, "source": "t", "split": "dev"},
        {"text": long_benign, "labels": {"hate": 0}, "source": "t", "split": "dev"},
        {"text": "ignored train row awful", "labels": {"hate": 0}, "source": "t", "split": "train"},
    ]
    data = tmp_path / "d.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    thr = tmp_path / "calibration.json"
    thr.write_text(json.dumps({"categories": {c: {"threshold": 0.5} for c in CATEGORIES}}))
    monkeypatch.setattr(ev, "make_local_detector", lambda heads=None: FakeDetector())
    out, md, plots = tmp_path / "r.json", tmp_path / "r.md", tmp_path / "plots"
    rc = ev.main(["--data", str(tmp_path), "--split", "dev", "--out", str(out), "--markdown", str(md),
                  "--plots", str(plots), "--thresholds", str(thr), "--no-throughput"])
    assert rc == 0
    rep = json.loads(out.read_text())
    assert set(rep["categories"]) == {"hate", "profanity"}
    assert rep["categories"]["hate"]["n"] == 4  # the train row is filtered out
    # the long text's harmful word sits in its last window only; max over windows finds it
    assert rep["categories"]["hate"]["auprc"] == 1.0
    assert rep["meta"]["windows"] > 5
    assert rep["any"]["recall"] == 1.0 and rep["any"]["precision"] == 1.0
    assert "| any |" in md.read_text()
    assert (plots / "calibration_hate.png").stat().st_size > 0


def test_cli_implied_labels_add_the_negatives_training_uses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [
        {"text": "awful threat", "labels": {"hate": 1, "violence": 1}, "source": "edos", "split": "dev"},
        {"text": "awful but no threat", "labels": {"hate": 1}, "source": "edos", "split": "dev"},
        {"text": "a calm note", "labels": {c: 0 for c in CATEGORIES}, "source": "b", "split": "dev"},
    ]
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    monkeypatch.setattr(ev, "make_local_detector", lambda heads=None: FakeDetector())
    base = ["--data", str(tmp_path), "--no-throughput"]
    ev.main([*base, "--out", str(tmp_path / "given.json")])
    ev.main([*base, "--implied-labels", "--out", str(tmp_path / "implied.json"),
             "--markdown", str(tmp_path / "implied.md")])
    given = json.loads((tmp_path / "given.json").read_text())
    implied = json.loads((tmp_path / "implied.json").read_text())
    assert given["categories"]["violence"]["n"] == 2 and given["meta"]["implied_labels"] == []
    assert implied["categories"]["violence"]["n"] == 3
    assert implied["meta"]["implied_labels"] and "filled in by --implied-labels" in (tmp_path / "implied.md").read_text()


def test_implied_auprc_scores_only_the_categories_the_rules_change() -> None:
    from guard.models.data import Example, LabeledSet

    v, h = CATEGORIES.index("violence"), CATEGORIES.index("hate")
    y, k = np.zeros((3, len(CATEGORIES)), np.float32), np.zeros((3, len(CATEGORIES)), bool)
    k[:, h] = True
    y[:2, h] = 1
    y[0, v], k[0, v] = 1, True  # a threat; row 1 is hate without one; row 2 is no hate
    ex = tuple(Example(f"t{i}", {}, "edos", "dev") for i in range(3))
    scores = np.zeros_like(y)
    scores[:, v] = [0.9, 0.2, 0.5]
    out = ev.implied_auprc(scores, LabeledSet(ex, y, k), [0.5] * len(CATEGORIES))
    assert out == {"violence": 1.0}  # row 1 became a violence negative; row 2 stayed unknown
    other = LabeledSet(tuple(Example(e.text, {}, "ethos", "dev") for e in ex), y, k)
    assert ev.implied_auprc(scores, other, [0.5] * len(CATEGORIES)) == {}


def test_cli_through_the_real_triton_server_matches_in_process(tmp_path: Path, triton_server: TritonServer) -> None:
    """`guard eval --triton-url` scores through the served models and reports what the worker's
    in-process detector would: same AUPRC, same per-source flagged shares."""
    rows = [
        {"text": "I will find you and hurt you, you worthless idiot.", "labels": {"harassment": 1, "violence": 1}},
        {"text": "Here is a recipe for a lemon cake: flour, sugar, eggs and butter.", "labels": {c: 0 for c in CATEGORIES}},
        {"text": "The council approved the new bus timetable on Tuesday.", "labels": {c: 0 for c in CATEGORIES}},
        {"text": "You are a pathetic loser and everyone hates you.", "labels": {"harassment": 1}},
        {"text": "Thanks for the help, the fix worked perfectly.", "labels": {"harassment": 0, "violence": 0}},
    ]
    for i, r in enumerate(rows):
        r.update(source="news" if i in (1, 2) else "chat", split="dev")
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    base = ["--data", str(tmp_path), "--no-throughput"]
    ev.main([*base, "--out", str(tmp_path / "local.json")])
    ev.main([*base, "--triton-url", triton_server.grpc_url, "--out", str(tmp_path / "triton.json")])
    local, served = (json.loads((tmp_path / f).read_text()) for f in ("local.json", "triton.json"))
    assert "@" in served["meta"]["detector"] and served["meta"]["windows"] == local["meta"]["windows"]
    assert local["by_source"]["news"]["any"]["flagged_negatives"] == 0.0  # a bus timetable, a cake
    assert local["by_source"]["chat"]["any"]["flagged_positives"] > 0
    assert served["by_source"]["news"]["any"] == local["by_source"]["news"]["any"]
    assert served["by_source"]["chat"]["any"] == local["by_source"]["chat"]["any"]
    for cat, blk in local["categories"].items():
        assert served["categories"][cat]["auprc"] == pytest.approx(blk["auprc"], abs=1e-3)
    assert served["any"]["auprc"] == pytest.approx(local["any"]["auprc"], abs=1e-3)


@pytest.mark.parametrize("bad", [["--stride", "0"], ["--stride", "-5"], ["--window-tokens", "4"],
                                 ["--stride", "80"]])
def test_window_arguments_outside_what_a_policy_allows_are_usage_errors(bad, capsys):
    """A stride of 0 or below ran and wrote a report of nonsense windows."""
    from guard.evaluation import main

    with pytest.raises(SystemExit) as exc:
        main(["--data", "none.jsonl", "--out", "none.json", *bad])
    assert exc.value.code == 2 and "--" in capsys.readouterr().err
