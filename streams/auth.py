"""Kafka credentials from settings, in the two forms guard's clients take: Faust's
``broker_credentials`` and aiokafka's keyword arguments.

One place, so the worker, the tuner, the thresholds follower and the command-line tools always
connect the same way: a cluster that needs SASL or TLS for one of them needs it for all.
"""

from __future__ import annotations

import ssl
from typing import Any

import faust
from aiokafka.helpers import create_ssl_context

from guard.settings import Settings


def ssl_context(s: Settings) -> ssl.SSLContext | None:
    """Verifies the brokers' certificates (with ``kafka_ssl_cafile`` or the system's CAs), and
    presents a client certificate when one is configured; None for plaintext protocols."""
    if s.kafka_security_protocol not in ("SSL", "SASL_SSL"):
        return None
    return create_ssl_context(cafile=str(s.kafka_ssl_cafile) if s.kafka_ssl_cafile else None,
                              certfile=str(s.kafka_ssl_certfile) if s.kafka_ssl_certfile else None,
                              keyfile=str(s.kafka_ssl_keyfile) if s.kafka_ssl_keyfile else None)


def client_options(s: Settings) -> dict[str, Any]:
    """Keyword arguments for any aiokafka client (producer, consumer, admin): bootstrap and auth."""
    out: dict[str, Any] = {"bootstrap_servers": s.kafka_bootstrap,
                           "security_protocol": s.kafka_security_protocol}
    ctx = ssl_context(s)
    if ctx is not None:
        out["ssl_context"] = ctx
    if s.kafka_security_protocol.startswith("SASL_"):
        assert s.kafka_sasl_password is not None  # Settings checks it
        out.update(sasl_mechanism=s.kafka_sasl_mechanism, sasl_plain_username=s.kafka_sasl_username,
                   sasl_plain_password=s.kafka_sasl_password.get_secret_value())
    return out


def faust_credentials(s: Settings) -> faust.types.auth.CredentialsT | None:
    """The same, for a Faust app (its consumer, producer and topic admin)."""
    protocol = s.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return faust.SSLCredentials(ssl_context(s))
    assert s.kafka_sasl_password is not None
    return faust.SASLCredentials(username=s.kafka_sasl_username, password=s.kafka_sasl_password.get_secret_value(),
                                 mechanism=s.kafka_sasl_mechanism, ssl_context=ssl_context(s))
