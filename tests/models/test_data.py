"""Reading the shared labeled JSONL: unknown labels stay unknown; licences come from the README."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from guard.models.data import (
    IMPLIED_RULES,
    implied_labels,
    implied_rules_doc,
    manifest,
    noncommercial_sources,
    read_examples,
    readme_licences,
)
from guard.types import CATEGORIES

README = """# data
| file | kind | labels by | rows (train/dev) | categories pos/neg | license as stated in repo |
|---|---|---|---|---|---|
| a.jsonl | H | human | 2 (1/1) | hate 1/1 | MIT |
| b.jsonl | O | design | 1 (1/0) | all 0 | code Apache-2.0, data CC BY-NC 4.0 |
| c.jsonl | H | design | 1 (1/0) | all 0 | non-commercial research (AG corpus) |
"""


def _write(d: Path) -> None:
    (d / "README.md").write_text(README)
    rows = {
        "a": [{"text": "x", "labels": {"hate": 1}, "source": "a", "split": "train"},
              {"text": "y", "labels": {"hate": 0, "profanity": 1}, "source": "a", "split": "dev"}],
        "b": [{"text": "z", "labels": {c: 0 for c in CATEGORIES}, "source": "b", "split": "train"}],
        "c": [{"text": "w", "labels": {c: 0 for c in CATEGORIES}, "source": "c", "split": "train"}],
    }
    for name, rs in rows.items():
        (d / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rs))


def test_unknown_labels_are_masked(tmp_path: Path) -> None:
    _write(tmp_path)
    data = read_examples([tmp_path])
    assert len(data) == 4
    h, p = CATEGORIES.index("hate"), CATEGORIES.index("profanity")
    first = data.texts.index("x")
    assert data.known[first, h] and not data.known[first, p]  # profanity unknown, not 0
    assert data.y[first, h] == 1
    assert read_examples([tmp_path], splits=["dev"]).texts == ["y"]


def test_licences_and_noncommercial_exclusion(tmp_path: Path) -> None:
    _write(tmp_path)
    lic = readme_licences(tmp_path)
    assert lic["a"] == "MIT"
    assert {"b", "c"} <= noncommercial_sources(tmp_path)
    assert "a" not in noncommercial_sources(tmp_path)
    kept = read_examples([tmp_path], exclude_sources=noncommercial_sources(tmp_path))
    assert set(kept.sources.tolist()) == {"a"}
    man = {m["source"]: m for m in manifest(kept, tmp_path)}
    assert man["a"]["license"] == "MIT" and man["a"]["train"] == 1 and man["a"]["dev"] == 1


def test_implied_labels_fill_only_unknown_labels_of_the_named_sources(tmp_path: Path) -> None:
    def write(path: Path, rows: list[dict[str, object]]) -> None:
        path.write_text("".join(json.dumps({**r, "split": "train"}) + "\n" for r in rows))

    write(tmp_path / "edos.jsonl", [
        {"text": "sexist, no threat", "labels": {"hate": 1}, "source": "edos"},
        {"text": "sexist threat", "labels": {"hate": 1, "violence": 1}, "source": "edos"},
        {"text": "not sexist", "labels": {"hate": 0}, "source": "edos"},  # violence not judged: stays unknown
    ])
    write(tmp_path / "ethos.jsonl", [{"text": "hateful", "labels": {"hate": 1}, "source": "ethos"}])
    data = read_examples([tmp_path])
    v = CATEGORIES.index("violence")
    rules = (("edos", ("hate", 1), "violence", 0),)
    out = implied_labels(data, rules)
    by_text = {e.text: i for i, e in enumerate(out.examples)}
    i = by_text["sexist, no threat"]
    assert out.known[i, v] and out.y[i, v] == 0 and out.examples[i].labels == {"hate": 1, "violence": 0}
    i = by_text["sexist threat"]
    assert out.known[i, v] and out.y[i, v] == 1
    assert not out.known[by_text["not sexist"], v]
    assert not out.known[by_text["hateful"], v]  # another source: untouched
    # known labels never change, and the input set is not modified
    assert (out.y[data.known] == data.y[data.known]).all()
    assert int(data.known[:, v].sum()) == 1 and int(out.known[:, v].sum()) == 2


def test_implied_rules_are_documented_for_manifests() -> None:
    doc = implied_rules_doc()
    assert len(doc) == len(IMPLIED_RULES)
    assert "edos: hate=1 and violence unknown -> violence=0" in doc


def test_implied_cells_are_marked_and_follow_subsets_copies_and_concat(tmp_path: Path) -> None:
    from guard.models.train import concat, obfuscated_copies

    rows = [{"text": f"sexist post {i}", "labels": {"hate": 1}, "source": "edos", "split": "train"} for i in range(6)]
    rows.append({"text": "a threat", "labels": {"hate": 1, "violence": 1}, "source": "edos", "split": "train"})
    (tmp_path / "edos.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = read_examples([tmp_path])
    assert data.implied is None and not data.implied_cells.any()
    out = implied_labels(data, (("edos", ("hate", 1), "violence", 0),))
    v = CATEGORIES.index("violence")
    # exactly the cells the rule filled in: the six no-threat posts' violence
    assert out.implied is not None and int(out.implied.sum()) == 6 and out.implied[:, v].sum() == 6
    assert (out.implied == (out.known & ~data.known)).all()
    half = out.subset(np.arange(len(out)) % 2 == 0)
    assert (half.implied == out.implied[::2]).all()
    copies, idx = obfuscated_copies(out, 1.0, "t")
    assert (copies.implied_cells == out.implied[idx]).all()
    both = concat(data, out)  # a set without implied labels contributes none
    assert both.implied is not None and int(both.implied.sum()) == 6 and not both.implied[: len(data)].any()


def test_example_weights_scale_only_implied_labels(tmp_path: Path) -> None:
    from guard.models.train import TrainConfig, example_weights

    rows = [{"text": f"sexist post {i}", "labels": {"hate": 1}, "source": "edos", "split": "train"} for i in range(4)]
    rows += [{"text": f"threat {i}", "labels": {"hate": 1, "violence": 1}, "source": "edos", "split": "train"}
             for i in range(2)]
    (tmp_path / "edos.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = implied_labels(read_examples([tmp_path]), (("edos", ("hate", 1), "violence", 0),))
    v, h = CATEGORIES.index("violence"), CATEGORIES.index("hate")
    full = example_weights(out, TrainConfig(implied_weight=1.0, pos_weight_power=0.0))
    quarter = example_weights(out, TrainConfig(implied_weight=0.25, pos_weight_power=0.0))
    imp = out.implied_cells
    # relative to a given label, an implied one weighs a quarter as much; unknown cells stay 0
    given = out.known & ~imp
    ratio_full = full[imp].mean() / full[given].mean()
    ratio_quarter = quarter[imp].mean() / quarter[given].mean()
    assert ratio_full == pytest.approx(1.0) and ratio_quarter == pytest.approx(0.25)
    assert (quarter[~out.known] == 0).all() and (quarter[:, h] > 0).all()
    # the class weight counts implied negatives at their weight, so lighter ones lift positives less
    # (measured against the same rows' hate label, whose class weight is 1 here)
    pos = out.y[:, v] > 0
    lift = {wt: example_weights(out, TrainConfig(implied_weight=wt)) for wt in (1.0, 0.25)}
    assert (lift[1.0][pos, v] / lift[1.0][pos, h]) == pytest.approx(2 ** 0.5)
    assert (lift[0.25][pos, v] / lift[0.25][pos, h]) == pytest.approx(1.0)


@pytest.mark.parametrize(("row", "says"), [
    ({"text": "you are vermin", "labels": {"Hate": 1}}, "unknown label 'Hate'"),     # dropped: unknown
    ({"text": "i will hurt you", "labels": {"violence": 0.9}}, "is not 0 or 1"),    # floored to 0
    ({"text": None, "labels": {"hate": 1}}, "text must be a string"),              # read as "None"
    ({"text": "x", "labels": ["hate"]}, "labels must be a mapping"),
])
def test_a_row_that_would_be_misread_is_an_error_naming_its_line(tmp_path, row, says):
    import json

    from guard.models.data import read_examples

    f = tmp_path / "src.jsonl"
    f.write_text(json.dumps({"text": "fine", "labels": {"hate": True}}) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(ValueError, match=says) as exc:
        read_examples([f])
    assert "src.jsonl:2" in str(exc.value)
