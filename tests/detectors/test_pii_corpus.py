"""The PII layer on the seeded corpus of ``benchmarks.pii_corpus``, streamed with random cuts.

Each document is fed as a stream the way the pipeline does it (scan the unreleased text plus left
context on every chunk, release up to ``stable_until``), and we check:

* recall >= 99% and precision >= 98% per entity type, over thousands of entities of each type
  and the hard negatives mixed in with them;
* the findings collected from the stream are exactly those of one scan of the whole text, so
  they do not depend on where the stream was cut;
* no character of a detected entity is released before the finding that covers it is known.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # the benchmarks package lives beside guard/, not inside it
    sys.path.insert(0, str(REPO))

from benchmarks.pii_corpus import TYPES, Corpus, Tally, build_corpus, leaks, random_cuts, score, stream  # noqa: E402
from guard.detectors.base import Scanner  # noqa: E402
from guard.detectors.lexical import LexicalScanner, load_blocklists  # noqa: E402
from guard.detectors.pii import PiiScanner  # noqa: E402
from guard.types import PII  # noqa: E402


def _evaluate(corpus: Corpus, scanners: list[Scanner], seed: int, mean_chunk: float) -> None:
    pii = next(s for s in scanners if isinstance(s, PiiScanner))
    rng = random.Random(seed)
    tallies: dict[str, Tally] = {}
    differ: list[str] = []
    leaked: list[str] = []
    for doc in corpus.docs:
        run = stream(scanners, doc.text, random_cuts(rng, len(doc.text), mean_chunk))
        streamed = {f for f in run.findings if f.category == PII}
        whole = set(pii.scan(doc.text, True).findings)
        if streamed != whole:
            differ.append(doc.text[:80])
        predicted = [(f.start, f.end, f.label) for f in streamed]
        score(predicted, doc.entities, tallies)
        detected = [e for e in doc.entities
                    if any(lab == e.label and s < e.end and e.start < t for s, t, lab in predicted)]
        leaked.extend(f"{e.label}: {doc.text[e.start:e.end]!r}" for e in leaks(run, detected))

    assert differ == [], f"{len(differ)} documents depend on the cuts"
    assert leaked == [], leaked[:10]
    report = {label: tallies.get(label, Tally()).as_dict() for label in TYPES}
    for label, row in report.items():
        assert row["tp"] + row["fn"] >= corpus.per_type, (label, row)
        assert row["recall"] is not None and row["recall"] >= 0.99, (label, row)
        assert row["precision"] is not None and row["precision"] >= 0.98, (label, row)


def test_corpus_streamed_with_both_fast_layers() -> None:
    """A smaller corpus through PII *and* lexical scanners: the release frontier is their minimum."""
    corpus = build_corpus(seed=99, per_type=150, negatives=400, fillers=400)
    lexical = LexicalScanner(load_blocklists(REPO / "policies" / "blocklists"))
    _evaluate(corpus, [PiiScanner(), lexical], seed=5, mean_chunk=12.0)


@pytest.mark.slow
def test_full_corpus_streamed() -> None:
    """2,000 entities of every type (36,000 in all) plus 4,000 hard negatives, random cuts."""
    corpus = build_corpus()
    assert min(corpus.counts().values()) >= 2000
    _evaluate(corpus, [PiiScanner()], seed=7, mean_chunk=16.0)
