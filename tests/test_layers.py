"""Data flows one way, and the layers keep to it (what an import-linter contract would say).

``guard`` is the library: it never imports the Kafka side (``streams``, ``faust``, ``aiokafka``)
nor ``benchmarks``, so it can be embedded without a broker. ``guard.devenv`` (the dev broker and
Triton launcher) is the one exception for aiokafka. ``streams`` never imports ``benchmarks``.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def imports(package: str) -> dict[str, set[str]]:
    """file → top-level modules it imports, anywhere in the file (lazy imports count too)."""
    out = {}
    for path in (REPO / package).rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        mods = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        mods |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module and not n.level}
        out[str(path.relative_to(REPO))] = {m.split(".")[0] for m in mods}
    return out


def test_guard_never_imports_the_kafka_side():
    bad = {f: mods & {"streams", "faust", "aiokafka", "benchmarks"} for f, mods in imports("guard").items()
           if not f.startswith("guard/devenv/")}
    assert {f: m for f, m in bad.items() if m} == {}


def test_devenv_needs_aiokafka_only():
    bad = {f: mods & {"streams", "faust", "benchmarks"} for f, mods in imports("guard").items()
           if f.startswith("guard/devenv/")}
    assert {f: m for f, m in bad.items() if m} == {}


def test_streams_never_imports_benchmarks():
    bad = {f: mods & {"benchmarks"} for f, mods in imports("streams").items()}
    assert {f: m for f, m in bad.items() if m} == {}
