"""Settings refuse what they would otherwise misread or silently ignore."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from guard.settings import Settings


@pytest.mark.parametrize(("env", "says"), [
    ({"GUARD_LOG_LEVEL": "verbose"}, "log_level"),          # logged at INFO
    ({"GUARD_WEB_PORT": "99999"}, "web_port"),
    ({"GUARD_KAFKA_SASL_USERNAME": "svc", "GUARD_KAFKA_SASL_PASSWORD": "pw"}, "does not use them"),
    ({"GUARD_KAFKA_SSL_CAFILE": "/etc/ssl/ca.pem"}, "does not use them"),  # PLAINTEXT ran unencrypted
])
def test_refused(env, says, monkeypatch):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ValidationError, match=says):
        Settings()


def test_lenient_where_the_meaning_is_plain(monkeypatch):
    monkeypatch.setenv("GUARD_LOG_LEVEL", "warn")  # logging's own alias, which workers ran with
    monkeypatch.setenv("GUARD_POLICY_DIR", "")  # read as ".", the working directory
    s = Settings()
    assert s.log_level == "WARN" and s.policy_dir == Settings.model_fields["policy_dir"].default
