"""Does fine-tuning the encoder generalise to sources it never saw?

Dev is a hash split of the same 24 sources as train, so a fine-tuned encoder's dev gain may be a
gain on those sources' style only. This benchmark holds whole sources out of training and scores
them, side by side, in one run:

- ``frozen``: the plain all-MiniLM-L6-v2 encoder, only the training head learns
  (``guard.models.finetune`` with ``lr=0``);
- ``adapter``: the shipped recipe, LoRA on every dense layer plus the head (the defaults of
  ``guard models finetune``);
- ``adapter-implied`` (on request, ``--models``): the adapter trained with ``--implied-labels``,
  so the held-out ``ethos`` violence labels (threats against hateful posts that are none) test
  what those labels teach; ``adapter-implied-w0.25`` gives them a quarter of a given label's
  weight (``--implied-weight 0.25``).

All see the same texts, windows, weights, schedule and seed; all are scored with their training
head (raw sigmoid, max over stream windows) on dev of the remaining sources (in distribution) and
on every row, train and dev, of the held-out sources (out of distribution). The default held-out
set has a source for each category the public benchmarks find weakest: ``ethos`` (hate, violence,
harassment), ``toxigen_seed`` (hate), ``kaggle_insults`` (harassment) and ``suicide_tweets``
(self_harm).

Needs the ``finetune`` extra (torch); about 15 min (frozen) + 45 min (adapter) on 2 cores.

    python -m benchmarks.transfer --out benchmarks/results/transfer.json \
        --markdown benchmarks/results/transfer.md
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import REPO, git_sha
from guard.models import paths
from guard.types import CATEGORIES

HELD_OUT = ("ethos", "kaggle_insults", "suicide_tweets", "toxigen_seed")
#: the models it can train, as changes to ``FinetuneConfig``'s defaults (the label setting explicit,
#: so a change of default does not change what a committed result means)
MODELS: dict[str, dict[str, Any]] = {
    "frozen": {"lr": 0.0, "implied_labels": False},
    "adapter": {"implied_labels": False},
    "adapter-implied": {"implied_labels": True},  # + the labels guard.models.data.IMPLIED_RULES fill in
    "adapter-implied-w0.25": {"implied_labels": True, "implied_weight": 0.25},  # r4's setting
    "adapter-unpunctuated": {"implied_labels": False, "unpunctuated": 0.1},  # p2's setting
    "adapter-balanced": {"implied_labels": False, "source_power": 0.75},  # b1's setting
    "adapter-lpft": {"implied_labels": False, "probe_epochs": 1},  # l1's setting: a head-only epoch first
    "adapter-adversary": {"implied_labels": False, "adversary": 0.3},  # d1's: a reversed source classifier
}


def markdown(res: dict[str, Any]) -> str:
    cats = [c for c in CATEGORIES if any(c in r["unseen"]["auprc"] for r in res["runs"])]
    powers = sorted({c.get("source_power", 0.5) for c in res["configs"].values()})  # 0.5 before b1 had the key
    probes = sorted({c.get("probe_epochs", 0) for c in res["configs"].values()})
    adversaries = sorted({c.get("adversary", 0.0) for c in res["configs"].values()})
    wise = sorted({float(r["model"].rsplit("-wise", 1)[1]) for r in res["runs"] if "-wise" in r["model"]})
    lines = [
        "# Transfer to unseen sources: frozen encoder vs adapter",
        "",
        f"`{res['command']}` — git {res['git_sha']}. Held out of training: "
        f"{', '.join(res['held_out'])} ({res['unseen_texts']} texts, all splits). AUPRC of each "
        f"model's training head, max over stream windows. Emoji read as names: {res['tokenizer']['emoji_names']}. "
        f"Seed: {', '.join(sorted({str(c['seed']) for c in res['configs'].values()}))}."
        + (" Tweet-platform artefacts skipped: True." if res["tokenizer"].get("platform_artefacts") else "")
        + (" Bracketed placeholders ([USER], [URL]) skipped: True."
           if res["tokenizer"].get("bracketed_placeholders") else "")
        + (f" Source power: {', '.join(map(str, powers))}." if powers != [0.5] else "")
        + (f" Head-only epochs first (LP-FT): {', '.join(map(str, probes))}." if probes != [0] else "")
        + (f" Gradient-reversed source classifier (DANN) at weight: {', '.join(map(str, adversaries))}."
           if adversaries != [0.0] else "")
        + (f" Rows named `-wise<α>`: the last epoch's model moved back toward the probe's, at α = "
           f"{', '.join(map(str, wise))} (WiSE-FT; no training of their own)." if wise else ""),
        "",
        "| model | epoch | set | any | " + " | ".join(cats) + " |",
        "|---|---|---|---|" + "---|" * len(cats),
    ]
    for r in res["runs"]:
        for key, name in (("dev", "dev, seen sources"), ("unseen", "held-out sources")):
            f = r[key]
            lines.append(f"| {r['model']} | {r['epoch']} | {name} | {f['any_auprc']:.3f} | "
                         + " | ".join(f"{f['auprc'][c]:.3f}" if c in f["auprc"] else "–" for c in cats)
                         + " |")
    lines += ["", "Training time: " + ", ".join(f"{r['model']} epoch {r['epoch']} {r.get('seconds', '–')} s"
                                                  for r in res["runs"] if "-wise" not in r["model"]), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.transfer", description=__doc__.split("\n")[0])
    p.add_argument("--data", default=None, help="shared data directory (default ../shared/data from the repo)")
    p.add_argument("--hold-out", action="append", default=None, help=f"source to hold out (default {HELD_OUT})")
    p.add_argument("--epochs", type=int, default=2,
                   help="2, as every committed transfer result; the shipped recipe trains 3 since heads v8")
    p.add_argument("--seed", type=int, default=0,
                   help="FinetuneConfig.seed for every model (0, as every committed result before run t2)")
    p.add_argument("--models", default="frozen,adapter", help=f"comma-separated, of {', '.join(MODELS)}")
    p.add_argument("--wise", default="",
                   help="comma-separated alphas: after the last epoch also score each LP-FT model moved back "
                        "toward its start (guard.models.finetune.wise; run l2)")
    p.add_argument("--limit", type=int, default=0, help="train on the first N texts only (smoke runs)")
    p.add_argument("--out", default=str(REPO / "benchmarks/results/transfer.json"))
    p.add_argument("--markdown", default=str(REPO / "benchmarks/results/transfer.md"))
    args = p.parse_args(argv)
    alphas = [float(a) for a in args.wise.split(",") if a]
    if alphas and any(not MODELS.get(n, {}).get("probe_epochs") for n in args.models.split(",")):
        raise SystemExit("--wise needs LP-FT models (a probe head to move back to), e.g. --models adapter-lpft")

    from safetensors.numpy import load_file

    from guard.models.data import read_examples
    from guard.models.features import STREAM_STRIDE, WINDOW_TOKENS, stream_windows
    from guard.models.finetune import FinetuneConfig, prepare, report, resolve_precision, train, wise
    from guard.models.tokenizer import tokenizer_settings

    t0 = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t0:7.1f}s] {msg}", file=sys.stderr, flush=True)

    data_dir = Path(args.data) if args.data else REPO.parent / "shared" / "data"
    held = tuple(args.hold_out or HELD_OUT)
    everything = read_examples([data_dir])
    unseen = everything.subset(np.isin(everything.sources, held))
    w_unseen = stream_windows(unseen.texts, WINDOW_TOKENS, STREAM_STRIDE)
    log(f"held out: {held}: {len(unseen)} texts, {len(w_unseen.ids)} windows")
    weights = load_file(str(paths.weights_dir() / "model.safetensors"))
    command = "python -m benchmarks.transfer " + " ".join(argv if argv is not None else sys.argv[1:])
    res: dict[str, Any] = {"command": command.strip(), "git_sha": git_sha(), "held_out": list(held),
                           "unseen_texts": len(unseen), "tokenizer": tokenizer_settings(),
                           "runs": [], "configs": {}}
    def save() -> None:
        Path(args.out).write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
        Path(args.markdown).write_text(markdown(res), encoding="utf-8")

    # resolved once, so every model runs at the same precision and the result records which
    base = FinetuneConfig(epochs=args.epochs, seed=args.seed, precision=resolve_precision("auto"))
    preps: dict[tuple[bool, float], Any] = {}  # one data preparation per label and copy setting
    for name in args.models.split(","):
        if name not in MODELS:
            raise SystemExit(f"unknown model {name!r}: one of {', '.join(MODELS)}")
        cfg = replace(base, **MODELS[name])
        res["configs"][name] = asdict(cfg)
        key = (cfg.implied_labels, cfg.unpunctuated)
        if key not in preps:
            preps[key] = prepare(data_dir, held, cfg, args.limit, log)[0]
        prep = preps[key]

        def on_epoch(model: Any, epoch: int, name: str = name) -> dict[str, Any]:
            dev, out = report(model, prep.wdv, prep.dev), report(model, w_unseen, unseen)
            log(f"{name} epoch {epoch}: dev any {dev['any_auprc']}, held-out any {out['any_auprc']} "
                + " ".join(f"{c}={v}" for c, v in out["auprc"].items()))
            res["runs"].append({"model": name, "epoch": epoch, "dev": dev, "unseen": out})
            save()  # a long run cut short still leaves its finished epochs
            if epoch == cfg.epochs:
                for alpha in alphas:
                    between = wise(model, alpha)
                    w_dev, w_out = report(between, prep.wdv, prep.dev), report(between, w_unseen, unseen)
                    log(f"{name} wise {alpha}: dev any {w_dev['any_auprc']}, held-out any {w_out['any_auprc']} "
                        + " ".join(f"{c}={v}" for c, v in w_out["auprc"].items()))
                    res["runs"].append({"model": f"{name}-wise{alpha}", "epoch": epoch, "dev": w_dev,
                                        "unseen": w_out})
                    save()
            return {"dev": dev, "unseen": out}

        log(f"training {name}: {cfg}")
        _, history = train(prep, weights, cfg, log, on_epoch=on_epoch)
        for h in history:
            for r in res["runs"]:
                if r["model"] == name and r["epoch"] == h["epoch"]:
                    r["seconds"] = h["seconds"]
        save()
        log(f"wrote {args.out} and {args.markdown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
