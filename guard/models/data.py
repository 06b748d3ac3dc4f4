"""Labeled text in the shared JSONL format, read for training and evaluation.

One JSON object per line: ``{"text", "labels", "source", "split", "orig"}``. ``labels`` holds only the
categories a source speaks to; a missing key means *unknown* (masked out of losses and metrics), not 0.
A file or a directory of ``*.jsonl`` files can be read; the data README's summary table gives each
source's licence, so sources can be dropped by licence (``--exclude-license noncommercial``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from guard.types import CATEGORIES

#: Sources whose licence forbids commercial use, per the data README (used when the README's table
#: cannot be read, and checked against it when it can).
NONCOMMERCIAL_FALLBACK: frozenset[str] = frozenset(
    {"alpaca_eval_outputs", "ag_news", "safety_tuned_refusals"}
)

_NC = re.compile(r"\bNC\b|non-?commercial", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Example:
    text: str
    labels: dict[str, int]  # only known categories
    source: str
    split: str


@dataclass(frozen=True)
class LabeledSet:
    """Examples with a dense label matrix: ``y`` is 0/1, ``known`` marks labels the source gives."""

    examples: tuple[Example, ...]
    y: np.ndarray  # float32 [n, C]
    known: np.ndarray  # bool [n, C]
    #: bool [n, C]: the known labels that ``implied_labels`` filled in (None: none were), so
    #: training can weight them apart from the labels the sources give (``--implied-weight``)
    implied: np.ndarray | None = None

    @property
    def implied_cells(self) -> np.ndarray:
        return self.implied if self.implied is not None else np.zeros_like(self.known)

    @property
    def texts(self) -> list[str]:
        return [e.text for e in self.examples]

    @property
    def sources(self) -> np.ndarray:
        return np.array([e.source for e in self.examples])

    def __len__(self) -> int:
        return len(self.examples)

    def subset(self, mask: np.ndarray) -> LabeledSet:
        idx = np.flatnonzero(mask)
        return LabeledSet(tuple(self.examples[i] for i in idx), self.y[idx], self.known[idx],
                          None if self.implied is None else self.implied[idx])


def jsonl_files(paths: Iterable[str | Path]) -> list[Path]:
    """Expand files and directories (a directory means every ``*.jsonl`` in it), sorted per dir."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(p.glob("*.jsonl")))
        elif p.is_file():
            out.append(p)
        else:
            raise FileNotFoundError(f"no such data file or directory: {p}")
    return out


def _text(row: dict, path: Path, lineno: int) -> str:
    text = row.get("text")
    if not isinstance(text, str):  # str(None) was scored as the word "None", with its labels
        raise ValueError(f"{path}:{lineno}: text must be a string, not {type(text).__name__}")
    return text


def _labels(row: dict, path: Path, lineno: int, categories: Sequence[str]) -> dict[str, int]:
    """The row's labels among ``categories``. A key that is no category at all (``self-harm``,
    ``Hate``) or a value that is not 0/1 is an error: it used to drop out silently, or a soft
    0.9 floored to a known negative."""
    raw = row.get("labels") or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}:{lineno}: labels must be a mapping of category to 0/1")
    out: dict[str, int] = {}
    for k, v in raw.items():
        if k not in CATEGORIES:
            raise ValueError(f"{path}:{lineno}: unknown label {k!r}; categories: {list(CATEGORIES)}")
        if v not in (0, 1):  # True, False, 1.0 and 0.0 are 0 or 1
            raise ValueError(f"{path}:{lineno}: label {k}={v!r} is not 0 or 1")
        if k in categories:
            out[k] = int(v)
    return out


def read_examples(
    paths: Iterable[str | Path],
    splits: Sequence[str] | None = None,
    exclude_sources: Iterable[str] = (),
    categories: Sequence[str] = CATEGORIES,
) -> LabeledSet:
    """Read examples from JSONL files/directories, keeping ``splits`` (all when None)."""
    drop = set(exclude_sources)
    keep_split = None if splits is None else set(splits)
    examples: list[Example] = []
    for path in jsonl_files(paths):
        with path.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{lineno}: not JSON: {exc}") from exc
                source = str(row.get("source") or path.stem)
                if source in drop or path.stem in drop:
                    continue
                split = str(row.get("split", "dev"))
                if keep_split is not None and split not in keep_split:
                    continue
                examples.append(Example(_text(row, path, lineno), _labels(row, path, lineno, categories),
                                        source, split))
    n, c = len(examples), len(categories)
    y = np.zeros((n, c), np.float32)
    known = np.zeros((n, c), bool)
    index = {cat: j for j, cat in enumerate(categories)}
    for i, ex in enumerate(examples):
        for cat, v in ex.labels.items():
            y[i, index[cat]] = float(v > 0)
            known[i, index[cat]] = True
    return LabeledSet(tuple(examples), y, known)


#: Labels a source's annotation scheme settles though its mapping leaves them unknown
#: (``implied_labels``; opt-in for training and for ``guard eval``). EDOS files every sexist post under one vector, and
#: HatemojiBuild gives every hateful entry a type; in both, ``violence=1`` was set exactly for the
#: threat vectors/types, so a hateful post without it was judged to be no threat. Without these
#: negatives the violence head never sees hate that is not violent and fires on most of it (dev
#: EDOS + HatemojiBuild hate: violence AUPRC 0.36 against a base rate of 0.085).
#: Each rule: (source, (category, value) the row has, category unknown on the row, value implied).
IMPLIED_RULES: tuple[tuple[str, tuple[str, int], str, int], ...] = (
    ("edos", ("hate", 1), "violence", 0),
    ("hatemoji_build", ("hate", 1), "violence", 0),
)
#: Whether ``guard models finetune`` and ``guard models train`` apply them unless told otherwise.
IMPLIED_DEFAULT = False


def implied_labels(data: LabeledSet, rules: Sequence[tuple[str, tuple[str, int], str, int]] = IMPLIED_RULES,
                   categories: Sequence[str] = CATEGORIES) -> LabeledSet:
    """``data`` with the labels of ``rules`` filled in where unknown (known labels never change).

    Training applies it to train only, when asked (``--implied-labels``); ``guard eval`` scores
    the labels as the data gives them unless asked the same, so the headline dev figures stay
    comparable with other detectors'."""
    index = {cat: j for j, cat in enumerate(categories)}
    y, known = data.y.copy(), data.known.copy()
    src = data.sources
    for source, (if_cat, if_value), then_cat, value in rules:
        i, j = index[if_cat], index[then_cat]
        m = (src == source) & known[:, i] & (y[:, i] == float(if_value > 0)) & ~known[:, j]
        y[m, j] = float(value > 0)
        known[m, j] = True
    examples = tuple(
        e if not (known[k] != data.known[k]).any()
        else Example(e.text, {**e.labels, **{c: int(y[k, index[c]]) for c in categories
                                             if known[k, index[c]] and c not in e.labels}}, e.source, e.split)
        for k, e in enumerate(data.examples))
    return LabeledSet(examples, y, known, data.implied_cells | (known & ~data.known))


def implied_rules_doc(rules: Sequence[tuple[str, tuple[str, int], str, int]] = IMPLIED_RULES) -> list[str]:
    """The rules as the sentences that training manifests record."""
    return [f"{src}: {c}={v} and {t} unknown -> {t}={tv}" for src, (c, v), t, tv in rules]


def readme_licences(data_dir: str | Path) -> dict[str, str]:
    """Source name → licence text, from the summary table of ``<data_dir>/README.md``."""
    readme = Path(data_dir) / "README.md"
    out: dict[str, str] = {}
    if not readme.is_file():
        return out
    for line in readme.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 6 and cells[0].endswith(".jsonl"):
            out[cells[0][: -len(".jsonl")]] = cells[-1]
    return out


def noncommercial_sources(data_dir: str | Path) -> set[str]:
    """Sources whose licence (per the README table) is non-commercial, plus the known fallback set."""
    found = {name for name, lic in readme_licences(data_dir).items() if _NC.search(lic)}
    return found | set(NONCOMMERCIAL_FALLBACK)


def manifest(data: LabeledSet, data_dir: str | Path | None = None) -> list[dict[str, object]]:
    """Per source: licence, rows per split and positives/negatives per category."""
    lic = readme_licences(data_dir) if data_dir is not None else {}
    rows: dict[str, dict[str, object]] = {}
    src = data.sources
    for name in sorted(set(src.tolist())):
        m = src == name
        cats = {}
        for j, cat in enumerate(CATEGORIES):
            k = data.known[m, j]
            if k.any():
                pos = int(data.y[m, j][k].sum())
                cats[cat] = {"pos": pos, "neg": int(k.sum()) - pos}
        splits = [data.examples[i].split for i in np.flatnonzero(m)]
        rows[name] = {
            "source": name,
            "license": lic.get(name, "unknown"),
            "rows": int(m.sum()),
            "train": splits.count("train"),
            "dev": splits.count("dev"),
            "categories": cats,
        }
    return list(rows.values())
