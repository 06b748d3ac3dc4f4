"""The ``guard`` dispatcher: a user's mistake is one line naming the command, not a traceback."""

from __future__ import annotations

import pytest

from guard.cli import TRACEBACK_ENV, main


@pytest.mark.parametrize(("argv", "env", "says"), [
    (["moderate", "/nonexistent.txt"], {}, "No such file"),
    (["moderate", "--policy", "nosuch", __file__], {}, "unknown policy 'nosuch'"),
    (["eval", "--data", "nope.jsonl", "--out", "r.json"], {}, "no such data file"),
    (["thresholds"], {"GUARD_PARTITIONS": "four"}, "GUARD_PARTITIONS"),
    (["tuner"], {"GUARD_TUNER_WEB_PORT": "abc"}, "GUARD_TUNER_WEB_PORT"),  # not GUARD_WEB_PORT
])
def test_user_errors_are_one_line(argv, env, says, monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(TRACEBACK_ENV, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"guard {argv[0]}: ") and says in err and "Traceback" not in err


def test_the_traceback_on_request(monkeypatch):
    monkeypatch.setenv(TRACEBACK_ENV, "1")
    with pytest.raises(FileNotFoundError):
        main(["moderate", "/nonexistent.txt"])


def test_a_bug_keeps_its_traceback(monkeypatch):
    import guard.moderate

    def broken(argv):
        raise KeyError("a bug")

    monkeypatch.setattr(guard.moderate, "main", broken)
    with pytest.raises(KeyError):
        main(["moderate", "x"])
