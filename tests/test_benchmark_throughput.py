"""The throughput benchmark's encoder layouts: copies of the repository that change only the cores' split."""

from __future__ import annotations

import shutil
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from benchmarks.throughput import committed_layout, layout_repo
from guard.models import repository

SRC = Path(__file__).resolve().parents[1] / "triton_models"


def test_layout_repo_changes_only_instances_and_threads(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / repository.ENCODER_MODEL).mkdir(parents=True)
    shutil.copy(SRC / repository.ENCODER_MODEL / "config.pbtxt", repo / repository.ENCODER_MODEL / "config.pbtxt")
    before = text_format.Parse((repo / repository.ENCODER_MODEL / "config.pbtxt").read_text(), mc.ModelConfig())
    out = layout_repo(repo, tmp_path / "3x1", 3, 1)
    assert committed_layout(out) == "3x1" and committed_layout(repo) == committed_layout(SRC)
    after = text_format.Parse((out / repository.ENCODER_MODEL / "config.pbtxt").read_text(), mc.ModelConfig())
    after.instance_group[0].count = before.instance_group[0].count
    after.parameters["intra_op_threads"].string_value = before.parameters["intra_op_threads"].string_value
    assert after == before


def test_closed_loop_counts_the_measured_span_at_the_true_rate(monkeypatch) -> None:
    """Calls of 4 windows taking 0.3 s each on a fake clock: 13.3 windows/s. Counting whole calls by
    their start read 12.9 (a call in flight at the warm-up's end added its time, not its windows)."""
    import asyncio

    from benchmarks import throughput

    now = [0.0]
    monkeypatch.setattr(throughput.time, "perf_counter", lambda: now[0])

    async def call() -> int:
        await asyncio.sleep(0)
        now[0] += 0.3
        return 4

    r = asyncio.run(throughput.closed_loop(call, 1, 3.0, 0.2))
    assert r["windows_per_s"] == round(4 / 0.3, 1)
