"""PII precision and recall per entity type: guard's PII layer (streamed, random cuts) versus
Presidio's pattern recognisers (whole texts), on the seeded corpus of ``benchmarks.pii_corpus``.

Presidio runs with a blank spaCy pipeline (no model download, so only its pattern and
checksum recognisers work, which is the part comparable to ours), with its phone recogniser set to
our regions. Its entity names are mapped onto ours (IP_ADDRESS splits into IPV4/IPV6 by shape);
types it has no recogniser for are reported as null. Its other entity types (DATE_TIME, URL,
US_BANK_NUMBER, ...) are not ours and are not counted. Matching is by overlap and type, the same
for both.

    python -m benchmarks.pii --out benchmarks/results/pii.json

The output file is merged, not overwritten: keys this benchmark does not produce (``leakage``,
from the pipeline benchmark) are kept.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.pii_corpus import TYPES, Corpus, Tally, build_corpus, leaks, random_cuts, score, stream
from guard.detectors.pii import DEFAULT_REGIONS, PiiScanner
from guard.types import PII

PRESIDIO_ENTITIES = {
    "EMAIL_ADDRESS": "EMAIL",
    "PHONE_NUMBER": "PHONE",
    "CREDIT_CARD": "CREDIT_CARD",
    "IBAN_CODE": "IBAN",
    "US_SSN": "US_SSN",
    "IP_ADDRESS": "IP",  # split by shape below
}
PRESIDIO_TYPES = ("EMAIL", "PHONE", "CREDIT_CARD", "IBAN", "US_SSN", "IPV4", "IPV6")


def _summary(tallies: dict[str, Tally], types: Sequence[str]) -> dict[str, Any]:
    total = Tally()
    for label in types:
        t = tallies.get(label, Tally())
        total.tp, total.fp, total.fn = total.tp + t.tp, total.fp + t.fp, total.fn + t.fn
    return total.as_dict()


def run_guard(corpus: Corpus, seed: int, mean_chunk: float) -> dict[str, Any]:
    scanner = PiiScanner()
    rng = random.Random(seed)
    tallies: dict[str, Tally] = {}
    scans = leaked = differ = 0
    started = time.perf_counter()
    for doc in corpus.docs:
        run = stream([scanner], doc.text, random_cuts(rng, len(doc.text), mean_chunk))
        scans += run.scans
        predicted = [(f.start, f.end, f.label) for f in run.findings if f.category == PII]
        score(predicted, doc.entities, tallies)
        detected = [e for e in doc.entities
                    if any(lab == e.label and s < e.end and e.start < t for s, t, lab in predicted)]
        leaked += len(leaks(run, detected))
        differ += set(run.findings) != set(scanner.scan(doc.text, True).findings)
    seconds = time.perf_counter() - started
    return {
        "overall": _summary(tallies, TYPES),
        "overall_on_presidio_types": _summary(tallies, PRESIDIO_TYPES),
        "per_type": {label: tallies.get(label, Tally()).as_dict() for label in TYPES},
        "streaming": {
            "mean_chunk_chars": mean_chunk,
            "scans": scans,
            "context_chars": scanner.context_chars,
            "entities_released_before_their_finding": leaked,
            "documents_whose_findings_depend_on_the_cuts": differ,
        },
        "seconds": round(seconds, 2),
        "note": "streamed: every chunk rescans the unreleased text plus context; seconds include "
                "the final whole-text comparison scan per document",
    }


def _presidio_analyzer() -> Any:
    # tldextract (used by Presidio's e-mail recogniser) would fetch the public suffix list over the
    # network; its bundled snapshot is enough.
    os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")
    import spacy
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.nlp_engine import SpacyNlpEngine
    from presidio_analyzer.predefined_recognizers import PhoneRecognizer

    class BlankSpacyNlpEngine(SpacyNlpEngine):  # type: ignore[misc]
        """spaCy tokenisation only: no trained pipeline to download."""

        def load(self) -> None:
            self.nlp = {"en": spacy.blank("en")}

    engine = BlankSpacyNlpEngine(models=[{"lang_code": "en", "model_name": "blank"}])
    engine.load()
    registry = RecognizerRegistry()
    registry.load_predefined_recognizers(languages=["en"], nlp_engine=engine)
    registry.remove_recognizer("PhoneRecognizer")
    registry.add_recognizer(PhoneRecognizer(supported_regions=DEFAULT_REGIONS))
    return AnalyzerEngine(nlp_engine=engine, registry=registry, supported_languages=["en"])


def run_presidio(corpus: Corpus, thresholds: Sequence[float]) -> dict[str, Any]:
    from importlib.metadata import version

    analyzer = _presidio_analyzer()
    per_threshold: dict[float, dict[str, Tally]] = {t: {} for t in thresholds}
    started = time.perf_counter()
    for doc in corpus.docs:
        results = analyzer.analyze(text=doc.text, language="en", entities=list(PRESIDIO_ENTITIES))
        for threshold, tallies in per_threshold.items():
            predicted = []
            for r in results:
                if r.score < threshold:
                    continue
                label = PRESIDIO_ENTITIES[r.entity_type]
                if label == "IP":
                    label = "IPV6" if ":" in doc.text[r.start:r.end] else "IPV4"
                predicted.append((r.start, r.end, label))
            score(predicted, doc.entities, tallies)
    seconds = time.perf_counter() - started

    def report(tallies: dict[str, Tally]) -> dict[str, Any]:
        return {
            "overall": _summary(tallies, PRESIDIO_TYPES),
            "per_type": {
                label: tallies.get(label, Tally()).as_dict() if label in PRESIDIO_TYPES else None
                for label in TYPES
            },
        }

    default, *others = thresholds
    out: dict[str, Any] = {
        "version": version("presidio-analyzer"),
        "nlp_engine": "spacy.blank('en') (pattern and checksum recognisers only)",
        "phone_regions": list(DEFAULT_REGIONS),
        "score_threshold": default,
        **report(per_threshold[default]),
        "seconds": round(seconds, 2),
        "note": "overall covers the types Presidio has recognisers for; whole texts, no streaming",
    }
    for t in others:
        out[f"at_score_threshold_{t}"] = report(per_threshold[t])
    return out


def _git_sha() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--per-type", type=int, default=2000)
    parser.add_argument("--negatives", type=int, default=4000)
    parser.add_argument("--fillers", type=int, default=4000)
    parser.add_argument("--mean-chunk", type=float, default=16.0,
                        help="mean chunk length in characters of the random cuts")
    parser.add_argument("--no-presidio", action="store_true")
    args = parser.parse_args(argv)

    corpus = build_corpus(args.seed, args.per_type, args.negatives, args.fillers)
    result: dict[str, Any] = {
        "command": "python -m benchmarks." + " ".join([Path(__file__).stem, *(argv or sys.argv[1:])]),
        "git_sha": _git_sha(),
        "corpus": {
            "generator": "benchmarks.pii_corpus.build_corpus",
            "seed": args.seed,
            "per_type": args.per_type,
            "hard_negative_sentences": args.negatives,
            "filler_sentences": args.fillers,
            "documents": len(corpus.docs),
            "characters": sum(len(d.text) for d in corpus.docs),
            "entities": corpus.counts(),
        },
        "guard": run_guard(corpus, args.seed, args.mean_chunk),
    }
    if not args.no_presidio:
        result["presidio"] = run_presidio(corpus, thresholds=(0.0, 0.5))
    merged: dict[str, Any] = {}
    if args.out.exists():
        merged = json.loads(args.out.read_text())
    merged.update(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(merged, indent=2) + "\n")
    g = result["guard"]["overall"]
    print(f"guard: precision {g['precision']:.4f} recall {g['recall']:.4f}")
    if "presidio" in result:
        p = result["presidio"]["overall"]
        print(f"presidio: precision {p['precision']:.4f} recall {p['recall']:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
