"""benchmarks.transfer names its models as changes to FinetuneConfig; each must be a valid one."""

from dataclasses import replace

import pytest

from benchmarks.transfer import MODELS
from guard.models.finetune import FinetuneConfig


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_is_a_finetune_config(name: str) -> None:
    cfg = replace(FinetuneConfig(), **MODELS[name])
    assert "implied_labels" in MODELS[name]  # explicit, so a default change cannot move a result
    if name.startswith("adapter-implied"):
        assert cfg.implied_labels and cfg.lr > 0
