"""The PII-shapes benchmark: its corpus marks each entity where the shape put it, and scoring
counts a finding only where it overlaps the entity with its label."""

from __future__ import annotations

from benchmarks import pii_shapes


def test_every_entity_sits_where_the_corpus_says_in_every_shape():
    corpus = pii_shapes.build()
    assert {d["shape"] for d in corpus["docs"]} == set(pii_shapes.SHAPES)
    for d in corpus["docs"]:
        value = d["text"][d["start"]:d["end"]]
        assert value and value == value.strip(), d
        if d["shape"] == "markdown bold":
            assert d["text"][d["start"] - 2:d["start"]] == "**"


def test_score_counts_overlapping_findings_of_the_right_label_only():
    corpus = {"docs": [{"shape": "s", "label": "PHONE", "text": "x", "start": 5, "end": 10}] * 3,
              "lookalikes": ["1,234", "v1.2"]}
    found = {"docs": [[(6, 9, "PHONE")], [(6, 9, "US_SSN")], [(20, 25, "PHONE")]],
             "lookalikes": [[], [(0, 4, "IPV4")]]}
    r = pii_shapes.score(corpus, found)
    assert r["per_shape"]["s"] == {"entities": 3, "found": 1, "false_positives": 1, "recall": 0.333}
    assert r["lookalikes_masked"] == 1
