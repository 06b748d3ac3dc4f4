"""Kafka credentials from settings: the same for Faust and aiokafka, and never half-configured."""

from __future__ import annotations

import ssl

import faust
import pytest
from pydantic import ValidationError

from guard.settings import Settings
from streams.auth import client_options, faust_credentials


def test_plaintext_adds_nothing():
    assert client_options(Settings()) == {"bootstrap_servers": "127.0.0.1:9092", "security_protocol": "PLAINTEXT"}
    assert faust_credentials(Settings()) is None


def test_ssl_verifies_the_brokers():
    s = Settings(kafka_security_protocol="SSL")
    opts = client_options(s)
    ctx = opts["ssl_context"]
    assert isinstance(ctx, ssl.SSLContext) and ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    creds = faust_credentials(s)
    assert isinstance(creds, faust.SSLCredentials) and creds.protocol.value == "SSL"


def test_sasl_ssl_gives_both_the_same_user_and_protocol():
    s = Settings(kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="SCRAM-SHA-512",
                 kafka_sasl_username="svc", kafka_sasl_password="pw")
    opts = client_options(s)
    assert (opts["security_protocol"], opts["sasl_mechanism"], opts["sasl_plain_username"],
            opts["sasl_plain_password"]) == ("SASL_SSL", "SCRAM-SHA-512", "svc", "pw")
    creds = faust_credentials(s)
    assert isinstance(creds, faust.SASLCredentials)
    assert (creds.protocol.value, creds.mechanism.value, creds.username) == ("SASL_SSL", "SCRAM-SHA-512", "svc")
    assert "pw" not in repr(s), "the password stays out of logs and reprs"


@pytest.mark.parametrize("kwargs", [{"kafka_security_protocol": "SASL_PLAINTEXT"},
                                    {"kafka_security_protocol": "SASL_SSL", "kafka_sasl_username": "svc"},
                                    {"kafka_ssl_certfile": "client.pem"}])
def test_half_configured_credentials_fail_at_start(kwargs):
    with pytest.raises(ValidationError):
        Settings(**kwargs)
