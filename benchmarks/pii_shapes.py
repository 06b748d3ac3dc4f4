"""PII in the shapes LLM answers take: recall per shape and false positives on look-alikes, for the
PII layer of two checkouts side by side (each scanned in its own process, same texts, one run).

``benchmarks.pii`` measures the layer on sentences that put each entity after a space and before
a full stop. LLM answers also write Markdown (``**(415) 555-2671**``, ``_bob@corp.io_``), tables
and CSV rows, labels glued to the value (``Tel.415…``, ``IP:10.0.0.5``), the typographic hyphens
and no-break spaces of their tokenizers (U+2011, U+202F), and Chinese, Japanese or Korean prose
that runs into numbers and addresses without a space. Each shape here wraps entities of the
seeded corpus generator (``benchmarks.pii_corpus``); the look-alikes are numbers an answer writes
that are not PII (amounts, decimals, versions, identifiers, code), in the same shapes.

    python -m benchmarks.pii_shapes --trees OLD_CHECKOUT . --out benchmarks/results/pii-shapes.json

A finding counts when it overlaps the entity with its label (as in ``benchmarks.pii``); texts are
scanned whole (the streaming contract is the unit and property tests' job).
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.pii_corpus import _MAKERS, _Gen
from benchmarks.side_by_side import alternate, parser, record, run_probe, write

LABELS = ("EMAIL", "PHONE", "CREDIT_CARD", "US_SSN", "IPV4")
PER_SHAPE = 200


def _typographic(value: str) -> str:
    return value.replace("-", "\u2011").replace(" ", "\u202f")


def _no_break(value: str) -> str:
    return value.replace(" ", "\u00a0")


def _math_bold(value: str) -> str:
    """Digits as mathematical bold (U+1D7CE…), as some models write emphasis in plain text."""
    return "".join(chr(0x1D7CE + int(c)) if c.isdigit() else c for c in value)


#: shape name → (label → template with {x}, or None where the shape does not apply), value transform
SHAPES: dict[str, tuple[Callable[[str], str | None], Callable[[str], str]]] = {
    "plain": (lambda label: "The number you asked for is {x}.", lambda v: v),
    "markdown bold": (lambda label: "- **{label}:** **{x}**", lambda v: v),
    "markdown italic": (lambda label: "Write it down: _{x}_ (keep it private).", lambda v: v),
    "table cell": (lambda label: "| {name} | {x} | active |", lambda v: v),
    "csv row": (lambda label: "{name},{x},{word}", lambda v: v),
    "in parentheses": (lambda label: "On file ({x}) since May.", lambda v: v),
    "glued label": (lambda label: {"PHONE": "Tel.{x}", "CREDIT_CARD": "Card No.{x}", "US_SSN": "SSN#{x}",
                                   "IPV4": "IP:{x}"}.get(label), lambda v: v),
    "typographic hyphens and spaces": (lambda label: "The number you asked for is {x}.", _typographic),
    "Chinese prose": (lambda label: "联系方式{x}，谢谢。", lambda v: v),
    "Japanese prose": (lambda label: "お問い合わせは{x}までお願いします。", lambda v: v),
    "Korean prose": (lambda label: "번호는 {x}입니다.", lambda v: v),
    "no-break spaces": (lambda label: "{label}:\u00a0{x}.\u00a0Thanks.", _no_break),
    "mathematical bold digits": (lambda label: "The number you asked for is {x}.", _math_bold),
}

#: numbers an answer writes that are not PII, in the same shapes
LOOKALIKES = (
    "Revenue was **1,234,567,890** dollars.", "Pi is _3.14159265358979_.", "Upgrade to v1.2.3.4 today.",
    "Set `x_4155552671 = 0` first.", "Order #4155552671 shipped.", "Total: 2*4155552671 bytes.",
    "| 2024 | 1,299,000 | 3.5 % |", "id,4155552671_x,ok", "ID:10.0.0.5.1 is not an address.",
    "价格1,299元，2024年发布。", "第3章第12节。", "見積もりは12,345円です。", "UUID 06398848-fb17-4e2c-9c1a-1b2c3d4e5f60.",
    "ISBN 978-3-16-148410-0", "The build took 12:30:45.", "Sum of 1,234 and 5,678 is 6,912.",
    "Commit 4f3c2a1 fixed it.", "Coordinates 52.5200, 13.4050.", "Version 2024.11.28 is out.",
    "Serial SN-0042-7781-9930.", "Between 1990 and 2024, 35 % grew.", "The year ٢٠٢٤ was good.",
    "Expect 9000\u201320000 visitors per month.", "La population est de 669\u202f835\u202f601 habitants.",
    "e \u2248 2,7182818284", "h = (key)*2654435761 % m", "See report.2024011512.pdf.", "page.html#2125551234",
    "Il y a 4\u00a0294\u00a0967\u00a0295 adresses.", "Prix\u00a0: 1\u00a0299,00\u00a0€.",
    "Screen 1920x1080 pixels.",
)


def build(seed: int = 1234) -> dict[str, Any]:
    gen = _Gen(seed)
    docs: list[dict[str, Any]] = []
    for shape, (template_of, transform) in SHAPES.items():
        for label in LABELS:
            template = template_of(label)
            if template is None:
                continue
            for _ in range(PER_SHAPE // len(LABELS)):
                value = transform(_MAKERS[label](gen))
                text, offset = gen.fill(template.replace("{label}", label.title()), value)
                docs.append({"shape": shape, "label": label, "text": text,
                             "start": offset, "end": offset + len(value)})
    return {"seed": seed, "docs": docs, "lookalikes": list(LOOKALIKES)}


_PROBE = r"""
import json, sys
from guard.detectors.pii import PiiScanner
corpus = json.load(open(sys.argv[1]))
s = PiiScanner()
out = {"docs": [[(f.start, f.end, f.label) for f in s.scan(d["text"], True).findings] for d in corpus["docs"]],
       "lookalikes": [[(f.start, f.end, f.label) for f in s.scan(t, True).findings] for t in corpus["lookalikes"]]}
print(json.dumps(out))
"""


def probe(tree: Path, corpus_path: Path) -> dict[str, Any]:
    return run_probe(tree, _PROBE, str(corpus_path))  # type: ignore[no-any-return]


def score(corpus: dict[str, Any], found: dict[str, Any]) -> dict[str, Any]:
    shapes: dict[str, dict[str, int]] = {}
    for doc, findings in zip(corpus["docs"], found["docs"], strict=True):
        row = shapes.setdefault(doc["shape"], {"entities": 0, "found": 0, "false_positives": 0})
        row["entities"] += 1
        hit = [f for f in findings if f[0] < doc["end"] and doc["start"] < f[1]]
        row["found"] += any(f[2] == doc["label"] for f in hit)
        row["false_positives"] += len(findings) - len(hit)
    for row in shapes.values():
        row["recall"] = round(row["found"] / row["entities"], 3)
    total = sum(r["entities"] for r in shapes.values())
    lookalike_hits = [(t, f) for t, f in zip(corpus["lookalikes"], found["lookalikes"], strict=True) if f]
    return {"recall": round(sum(r["found"] for r in shapes.values()) / total, 3), "per_shape": shapes,
            "lookalikes_masked": len(lookalike_hits), "lookalikes": len(corpus["lookalikes"]),
            "lookalike_findings": [{"text": t, "findings": f} for t, f in lookalike_hits]}


def main(argv: list[str] | None = None) -> int:
    args = parser(__doc__).parse_args(argv)
    corpus = build()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "corpus.json"
        path.write_text(json.dumps(corpus))
        results = {name: score(corpus, found[0])
                   for name, found in alternate(args.trees, 1, lambda tree: probe(tree, path)).items()}
    out = record("benchmarks.pii_shapes", argv, args.trees, entities=len(corpus["docs"]), **results)
    print(f"{'shape':34} {'base':>6} {'new':>6}")
    for shape in results["new"]["per_shape"]:
        print(f"{shape:34} {results['base']['per_shape'][shape]['recall']:6.3f} "
              f"{results['new']['per_shape'][shape]['recall']:6.3f}")
    for name in ("base", "new"):
        r = results[name]
        print(f"{name}: recall {r['recall']}, look-alikes masked {r['lookalikes_masked']} of {r['lookalikes']}")
    write(args.out, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
