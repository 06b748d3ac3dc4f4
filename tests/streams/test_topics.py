"""Topic and app declarations carry the settings' partitioning and replication (no broker needed)."""

from __future__ import annotations

import os
from pathlib import Path

from guard.settings import Settings
from streams.topics import declare, new_app


def test_replication_factor_reaches_topics_and_table_changelogs():
    s = Settings(replication_factor=3, partitions=6)
    app = new_app(s, "guard-test-topics")
    topics = declare(app, s)
    assert app.conf.topic_replication_factor == 3  # changelogs of every table
    for t in (topics.chunks, topics.decisions, topics.deadletter, topics.feedback, topics.thresholds):
        assert t.replicas == 3
    assert topics.chunks.partitions == 6 and topics.thresholds.partitions == 1


def test_one_replica_by_default_for_the_single_dev_broker():
    s = Settings()
    app = new_app(s, "guard-test-topics-default")
    assert app.conf.topic_replication_factor == 1 and declare(app, s).chunks.replicas == 1


def test_faust_gets_a_data_directory_outside_the_working_directory(tmp_path, monkeypatch):
    """Faust creates ``<id>-data/`` in the working directory unless told otherwise; guard keeps its
    tables in memory, so a worker need not write where it starts."""
    monkeypatch.chdir(tmp_path)
    app = new_app(Settings(), "guard/test odd id")
    datadir = Path(app.conf.datadir)
    assert datadir.is_dir() and tmp_path not in datadir.parents and datadir.name.startswith("guard_test_odd_id-faust-")
    app._create_directories()  # what Faust does when the worker starts
    assert list(tmp_path.iterdir()) == []  # nothing in the working directory
    tables = Path(app.conf.tabledir)
    assert tables.is_dir() and tables.is_relative_to(datadir)  # Faust's folders went there instead


def test_a_configured_faust_data_directory_is_used_as_given(tmp_path):
    chosen = tmp_path / "faust"
    chosen.mkdir()
    app = new_app(Settings(faust_data_dir=chosen), "guard-test-datadir")
    assert Path(app.conf.datadir) == chosen


def test_data_dirs_of_processes_that_are_gone_are_swept(tmp_path):
    """A killed worker cannot remove its own temporary data directory; the next start does."""
    import subprocess
    import sys

    from streams.topics import _sweep_stale_data_dirs

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    gone = tmp_path / f"guard-faust-{dead.stdout.strip()}-abc"
    (gone / "v1" / "tables").mkdir(parents=True)  # the empty folders Faust makes
    mine = tmp_path / f"guard-faust-{os.getpid()}-def"
    mine.mkdir()
    kept = tmp_path / f"guard-faust-{dead.stdout.strip()}-ghi"
    kept.mkdir()
    (kept / "notes.txt").write_text("someone's file")
    assert _sweep_stale_data_dirs(tmp_path) == [gone]
    assert not gone.exists() and mine.exists() and kept.exists()
