"""Fill the committed Triton model repositories with the generated files.

``config.pbtxt`` and ``model.py`` files are committed; the binaries they name (the ONNX encoder,
the heads) are placed next to them at build time. Files are hard-linked from the build dir when
possible (no 90 MB copy, and a rebuilt encoder shows up as a different inode), copied otherwise.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from guard.models import paths
from guard.models.build import BuildResult

log = structlog.get_logger(__name__)

ENCODER_MODEL = "minilm_encoder"
HEADS_MODEL = "harm_heads"
CLASSIFIER_MODEL = "harm_classifier"
HEADS_FILE = "heads.npz"
#: File names inside ``<model>/1/``; the CPU names are also ``parameters`` in its config.pbtxt.
ENCODER_FILE = {"cpu": paths.ENCODER_INT8, "gpu": "model.onnx"}
#: CPU runs the int8 graph in ORT; TensorRT wants the fp32 graph and makes its own FP16 engine.
ENCODER_SOURCE = {"cpu": "int8", "gpu": "fp32"}


@dataclass
class AssembleReport:
    repo: Path
    heads_ok: bool
    actions: list[str] = field(default_factory=list)


def _is_current(src: Path, dst: Path) -> bool:
    if not dst.exists():
        return False
    if os.path.samefile(src, dst):
        return True
    s, d = src.stat(), dst.stat()
    return s.st_size == d.st_size and s.st_mtime_ns == d.st_mtime_ns


def place(src: Path, dst: Path) -> bool:
    """Make ``dst`` a current copy of ``src``; return whether anything changed."""
    if _is_current(src, dst):
        return False
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copy2(src, tmp)
    os.replace(tmp, dst)  # atomic: a server reloading the model never sees half a file
    return True


def assemble(flavour: paths.Flavour, built: BuildResult, heads: Path,
             repo: Path | None = None) -> AssembleReport:
    """Place the encoder and the heads into the ``flavour`` repository."""
    repo = paths.triton_repo(flavour) if repo is None else repo
    report = AssembleReport(repo=repo, heads_ok=heads.exists())
    encoder_src = built.int8 if ENCODER_SOURCE[flavour] == "int8" else built.fp32
    enc_dst = repo / ENCODER_MODEL / "1" / ENCODER_FILE[flavour]
    if place(encoder_src, enc_dst):
        report.actions.append(f"{enc_dst.relative_to(repo)} <- {encoder_src.name}")
    heads_dst = repo / HEADS_MODEL / "1" / HEADS_FILE
    if report.heads_ok:
        if place(heads, heads_dst):
            report.actions.append(f"{heads_dst.relative_to(repo)} <- {heads}")
    log.info("triton_repo_assembled", flavour=flavour, repo=str(repo), actions=report.actions,
             heads_ok=report.heads_ok)
    return report
