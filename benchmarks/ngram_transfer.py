"""Does the word-piece n-gram part help on sources it never saw? (run g1)

The shipped heads add an n-gram part to the MLP, weighted per category by a mix chosen on a fold of
the training sources. That fold cannot tell a lexical pattern that carries over from the wording of
the sources themselves. This benchmark scores heads fitted without some sources
(``guard models train --exclude-source ...``) on every row of those sources, in one run and over
the same windows and MLP: the MLP alone (mix 0), MLP plus n-gram part at the fitted mix, and the
n-gram part alone. AUPRC from the raw sigmoid of the summed logit, max over stream windows, as
``benchmarks.transfer`` reports; and the heads as served (calibrated), where only "any" can differ,
since it compares probabilities across categories. Dev of the seen sources alongside.

The heads' encoder must be the one in the build directory (``GUARD_MODEL_DIR`` or
``<repo>/build/models``): pooled features come from ``FeatureCache`` over it.

    python -m benchmarks.ngram_transfer --heads build/heads-g1/heads.npz --cache build/features-g1 \\
        --out benchmarks/results/runs/g1-ngram-transfer/ngram_transfer.json \\
        --markdown benchmarks/results/runs/g1-ngram-transfer/ngram_transfer.md
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import REPO, git_sha
from benchmarks.transfer import HELD_OUT
from guard.types import CATEGORIES


def text_scores(z_windows: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Window logits → a text's raw probability: the sigmoid of its highest window."""
    zt = np.maximum.reduceat(z_windows, offsets[:-1], axis=0)
    return 1.0 / (1.0 + np.exp(-np.clip(zt, -40.0, 40.0)))


def variants(zm: np.ndarray, zn: np.ndarray, mix: np.ndarray) -> dict[str, np.ndarray]:
    """The summed window logits each variant scores: one MLP and one n-gram fit, weighted apart."""
    return {"mlp": zm, "mlp+ngram (fitted mix)": zm + mix * zn, "ngram": zn}


def figures(scores: np.ndarray, labeled: Any) -> dict[str, Any]:
    from guard.evaluation import evaluate_scores

    rep = evaluate_scores(scores, labeled.y, labeled.known, np.full(len(CATEGORIES), 0.5))
    return {"any_auprc": rep["any"]["auprc"], "auprc": {c: v["auprc"] for c, v in rep["categories"].items()}}


def _fmt(v: float | None) -> str:
    return "–" if v is None else f"{v:.3f}"


def markdown(res: dict[str, Any]) -> str:
    cats = [c for c in CATEGORIES if c in res["sets"]["held-out"]["mlp"]["auprc"]]
    mix = res["mix"]
    lines = [
        "# Does the n-gram part help on sources it never saw?",
        "",
        f"`{res['command']}` — git {res['git_sha']}. Heads `{res['heads_version']}` over "
        f"`{res['encoder_id']}`, fitted without {', '.join(res['held_out'])}; those sources scored on every "
        f"row ({res['held_out_texts']} texts). AUPRC, raw sigmoid of the summed logit, max over stream "
        "windows. Fitted mix: " + ", ".join(f"{c} {mix[c]}" for c in CATEGORIES) + ".",
        "",
        "| set | variant | any | " + " | ".join(cats) + " |",
        "|---|---|---|" + "---|" * len(cats),
    ]
    for name, block in res["sets"].items():
        for variant, f in block.items():
            lines.append(f"| {name} | {variant} | {_fmt(f['any_auprc'])} | "
                         + " | ".join(_fmt(f["auprc"].get(c)) for c in cats) + " |")
    d = res["delta_held_out"]
    lines += ["", "Held out, fitted mix minus MLP alone: any " + f"{d['any']:+.3f}, "
              + ", ".join(f"{c} {v:+.3f}" for c, v in d["categories"].items() if v is not None) + ".", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.ngram_transfer", description=__doc__.split("\n")[0])
    p.add_argument("--data", default=None, help="shared data directory (default ../shared/data from the repo)")
    p.add_argument("--hold-out", action="append", default=None,
                   help=f"a source the heads were fitted without (default {HELD_OUT})")
    p.add_argument("--heads", required=True, help="heads.npz fitted without the held-out sources")
    p.add_argument("--cache", required=True, help="feature cache dir (the one the fit used saves encoding)")
    p.add_argument("--no-check-excluded", dest="check_excluded", action="store_false",
                   help="skip checking calibration.json beside the heads for the held-out sources (smoke runs)")
    p.add_argument("--out", required=True)
    p.add_argument("--markdown", required=True)
    args = p.parse_args(argv)

    from guard.models import paths
    from guard.models.data import read_examples
    from guard.models.features import STREAM_STRIDE, WINDOW_TOKENS, FeatureCache, stream_windows
    from guard.models.heads import Heads

    t0 = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t0:7.1f}s] {msg}", file=sys.stderr, flush=True)

    data_dir = Path(args.data) if args.data else REPO.parent / "shared" / "data"
    held = tuple(args.hold_out or HELD_OUT)
    heads = Heads.load(args.heads)
    if heads.ngram is None or heads.mix is None:
        raise SystemExit(f"{args.heads} has no n-gram part to test")
    meta_path = Path(args.heads).with_name("calibration.json")
    meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.exists() else {}
    excluded = meta.get("data", {}).get("excluded_sources", [])
    if args.check_excluded and not set(held) <= set(excluded):
        raise SystemExit(f"{meta_path} says the heads were fitted without {excluded}, not without all of {held}")
    mlp_only = replace(heads, ngram=None, mix=None)
    cache = FeatureCache(Path(args.cache))
    fitted_over = meta.get("encoder", {}).get("sha256_16")
    if fitted_over is not None and fitted_over != cache.fingerprint:
        # features of another graph would score these heads silently wrong
        raise SystemExit(f"the heads were fitted over encoder {fitted_over}; the build directory's is "
                         f"{cache.fingerprint} (build the graph they were fitted over)")
    everything = read_examples([data_dir])
    sets = {"held-out": everything.subset(np.isin(everything.sources, held)),
            "dev (seen sources)": read_examples([data_dir], splits=["dev"], exclude_sources=held)}
    manifest = json.loads((paths.build_dir() / paths.MANIFEST).read_text(encoding="utf-8"))
    res: dict[str, Any] = {
        "command": "python -m benchmarks.ngram_transfer " + " ".join(argv if argv is not None else sys.argv[1:]),
        "git_sha": git_sha(), "held_out": list(held), "held_out_texts": len(sets["held-out"]),
        "heads_version": heads.version, "heads_excluded_sources": excluded, "encoder_id": manifest["encoder_id"],
        "mix": {c: float(m) for c, m in zip(CATEGORIES, heads.mix, strict=True)}, "sets": {},
    }
    for name, labeled in sets.items():
        w = stream_windows(labeled.texts, WINDOW_TOKENS, STREAM_STRIDE)
        log(f"{name}: {len(labeled)} texts, {len(w.ids)} windows")
        cache.fill(w.ids, progress=log)
        pooled = cache.get(w.ids)
        zm = mlp_only.logits(pooled)
        zn = heads.ngram.logits(w.ids)
        res["sets"][name] = {v: figures(text_scores(z, w.offsets), labeled)
                             for v, z in variants(zm, zn, heads.mix).items()}
        # as served: each category's calibration curve, so "any" compares calibrated probabilities
        served = np.maximum.reduceat(heads.predict(pooled, w.ids), w.offsets[:-1], axis=0)
        res["sets"][name]["served (fitted mix, calibrated)"] = figures(served, labeled)
    ho = res["sets"]["held-out"]
    res["delta_held_out"] = {
        "any": round(ho["mlp+ngram (fitted mix)"]["any_auprc"] - ho["mlp"]["any_auprc"], 4),
        "categories": {c: round(ho["mlp+ngram (fitted mix)"]["auprc"][c] - ho["mlp"]["auprc"][c], 4)
                       for c in ho["mlp"]["auprc"] if ho["mlp"]["auprc"][c] is not None},
    }
    res["seconds"] = round(time.perf_counter() - t0, 1)
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    Path(args.markdown).write_text(markdown(res), encoding="utf-8")
    log(f"wrote {args.out} and {args.markdown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
