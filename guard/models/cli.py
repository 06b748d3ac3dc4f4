"""``guard models build|train|finetune``.

``build`` turns the packaged weights into the ONNX encoders and fills the Triton model
repositories with the generated files (which git ignores). It is idempotent: when the sources have
not changed it only re-checks the repository files, so it is safe to run before every test session.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

from guard.models import paths


def _build(args: argparse.Namespace) -> int:
    from guard.models.build import build_encoders
    from guard.models.repository import assemble

    t0 = time.perf_counter()
    out = Path(args.out) if args.out else paths.build_dir()
    res = build_encoders(out, force=args.force)
    state = "built" if res.rebuilt else "up to date"
    timing = " ".join(f"{k}={v}" for k, v in res.timings_s.items())
    print(f"encoder: {state} in {out} {timing}".rstrip())

    flavours: list[paths.Flavour] = ["cpu", "gpu"] if args.flavour == "all" else [args.flavour]
    heads = Path(args.heads) if args.heads else paths.heads_path()
    missing_heads = False
    for flavour in flavours:
        report = assemble(flavour, res, heads)
        print(f"triton[{flavour}]: {report.repo} ({', '.join(report.actions) or 'up to date'})")
        missing_heads |= not report.heads_ok
    if missing_heads:
        print(f"heads: MISSING {heads} — harm_heads/harm_classifier will not load until "
              "`guard models train` has written it (or pass --heads PATH)", file=sys.stderr)
    print(f"total {time.perf_counter() - t0:.2f}s")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="guard models")
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build the ONNX encoders and the Triton model repositories")
    b.add_argument("--flavour", choices=["cpu", "gpu", "all"], default="all")
    b.add_argument("--out", help=f"build directory (default: ${paths.MODEL_DIR_ENV} or <repo>/build/models)")
    b.add_argument("--heads", help="heads.npz to install (default: the committed guard/models/heads/heads.npz)")
    b.add_argument("--force", action="store_true", help="rebuild even if up to date")
    sub.add_parser("train", help="train the heads (guard.models.train)", add_help=False)
    sub.add_parser("finetune", help="train the encoder adapter (guard.models.finetune; needs the "
                                    "'finetune' extra: torch)", add_help=False)

    args_in = sys.argv[1:] if argv is None else argv
    if args_in[:1] in (["train"], ["finetune"]):
        # heavy deps (scikit-learn; torch for finetune), only when asked
        module = importlib.import_module(f"guard.models.{args_in[0]}")
        return int(module.main(args_in[1:]) or 0)
    args = parser.parse_args(args_in)
    return _build(args)


if __name__ == "__main__":
    raise SystemExit(main())
