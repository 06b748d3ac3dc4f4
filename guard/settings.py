"""Typed settings, read from ``GUARD_*`` environment variables; documented where declared.

Only composition roots (``streams/app.py``, the CLI commands, ``benchmarks/``) read settings; library
code takes its collaborators as arguments.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_REPO = Path(__file__).resolve().parents[1]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GUARD_", extra="ignore", frozen=True)

    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers")
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="how every guard client talks to the brokers")
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "PLAIN", description="SASL mechanism (SASL_* protocols)")
    kafka_sasl_username: str | None = Field(None, description="SASL user (SASL_* protocols)")
    kafka_sasl_password: SecretStr | None = Field(None, description="SASL password (SASL_* protocols); never logged")
    kafka_ssl_cafile: Path | None = Field(None, description="CA bundle for the brokers' certificates "
                                          "(SSL, SASL_SSL; unset: the system's)")
    kafka_ssl_certfile: Path | None = Field(None, description="client certificate, for brokers that want one")
    kafka_ssl_keyfile: Path | None = Field(None, description="the client certificate's key")
    triton_url: str | None = Field(
        None, description="Triton gRPC endpoint (host:port); unset = detectors in-process (ONNX Runtime)")
    triton_model: str = Field("harm_classifier", description="Triton model (ensemble) to call")
    triton_tls: bool = Field(False, description="reach Triton over TLS (tritonserver --grpc-use-ssl); "
                             "on by itself when a GUARD_TRITON_TLS_* file is set")
    triton_tls_ca_file: Path | None = Field(None, description="CA of Triton's certificate (unset: the system's)")
    triton_tls_cert_file: Path | None = Field(None, description="client certificate, for Triton with "
                                              "--grpc-use-ssl-mutual")
    triton_tls_key_file: Path | None = Field(None, description="the client certificate's key")
    triton_timeout_s: float = Field(2.0, gt=0, description="per-request deadline for Triton")
    triton_startup_wait_s: float = Field(
        60.0, ge=0, description="at start, how long a worker waits for Triton's model to be ready before it "
        "exits (code 1); it is not ready (/readyz) meanwhile")
    triton_retries: int = Field(
        2, ge=0, description="further tries of a Triton call that failed transiently (unavailable, "
        "deadline, connection); 0 = none")
    triton_backoff_s: float = Field(
        0.05, ge=0, description="pause before the first retry; doubles per retry, jittered to 50-100 %")
    triton_retry_budget_s: float = Field(
        1.0, gt=0, description="retries and pauses of one call end within this many seconds of its first failure")
    triton_pad_to_multiple: int = Field(
        1, ge=1, description="pad each Triton request's windows to a multiple of this many tokens: the GPU "
        "flavour's ONNX Runtime backend batches only requests of equal shape (16 there; 1 = no padding)")
    policy_dir: Path = Field(_REPO / "policies", description="folder of policy YAML files")
    policy_reload_s: float = Field(5.0, gt=0, description="how often the worker checks policies for changes")
    app_id: str = Field("guard", description="Faust app id = Kafka consumer group")
    faust_data_dir: Path | None = Field(
        None, description="Faust's data directory. guard's tables live in memory (restored from their "
        "changelogs), so nothing is written there; unset: a temporary directory per process, removed at "
        "exit, so a worker needs no writable working directory")
    topic_chunks: str = Field("llm.chunks", description="input: LLM token chunks, key stream_id")
    topic_decisions: str = Field("guard.decisions", description="output: one decision per chunk")
    topic_deadletter: str = Field("guard.deadletter", description="records guard could not use, with the reason")
    topic_feedback: str = Field("guard.feedback", description="reviewer / user verdicts on decisions")
    topic_thresholds: str = Field("guard.thresholds", description="compacted threshold events")
    partitions: int = Field(4, ge=1, description="partitions of the keyed topics (scale-out unit)")
    replication_factor: int = Field(
        1, ge=1, description="replicas of the topics and table changelogs guard creates (1 suits one broker; "
        "3 on a production cluster, or the streams' state has a single copy)")
    batch_max: int = Field(64, ge=1, description="chunks taken per batch (one semantic call per batch)")
    batch_within_s: float = Field(0.005, ge=0, description="how long a batch waits to fill")
    state_ttl_s: float = Field(600.0, gt=0, description="finished or idle streams are forgotten after this")
    gap_timeout_ms: int = Field(10_000, ge=0, description="how long chunks wait behind a missing seq")
    web_port: int = Field(6066, ge=0, le=65535,
                          description="worker HTTP port for /metrics, /healthz, /readyz (0 = none)")
    web_host: str = Field("127.0.0.1", description="address the worker's HTTP port binds (0.0.0.0 in containers)")
    stall_timeout_s: float = Field(
        120.0, ge=0, description="an assigned chunk partition with a backlog that has not moved this long "
        "makes the worker exit so others take it (0 = never)")
    recovery_timeout_s: float = Field(
        900.0, ge=0, description="Faust rebalancing or restoring the stream table this long without a break makes "
        "the worker exit to start over (a restore can hang); set above the longest restore plus a minute: a worker "
        "restarted after a crash first waits up to the group's session timeout (60 s) to join (0 = never)")
    crash_exit_s: float = Field(
        30.0, gt=0, description="a worker that crashed (a stall) and has not exited after this many seconds "
        "is ended without a graceful shutdown, which can hang behind what stalled")
    log_json: bool = Field(True, description="JSON logs (False: console renderer)")
    log_level: str = Field("INFO", description="log level: a name Python's logging knows (DEBUG, INFO, "
                           "WARNING or WARN, ERROR, CRITICAL), any case")

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, v: str) -> str:
        # an unknown name was logged at INFO without a word
        if v.upper() not in logging.getLevelNamesMapping():
            raise ValueError(f"unknown log level {v!r}; known: {sorted(logging.getLevelNamesMapping())}")
        return v.upper()

    @field_validator("policy_dir", mode="before")
    @classmethod
    def _unset_when_empty(cls, v: object) -> object:
        # an empty GUARD_POLICY_DIR= read as "." (the working directory), not as unset
        return _REPO / "policies" if v == "" else v

    @model_validator(mode="after")
    def _sasl_needs_credentials(self) -> Settings:
        if self.kafka_security_protocol.startswith("SASL_") and not (
                self.kafka_sasl_username and self.kafka_sasl_password):
            raise ValueError(f"GUARD_KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs "
                             "GUARD_KAFKA_SASL_USERNAME and GUARD_KAFKA_SASL_PASSWORD")
        if bool(self.kafka_ssl_certfile) != bool(self.kafka_ssl_keyfile):
            raise ValueError("GUARD_KAFKA_SSL_CERTFILE and GUARD_KAFKA_SSL_KEYFILE go together")
        # credentials the chosen protocol does not use were silently dropped: a deployment that
        # meant to encrypt or authenticate ran in plaintext without a word
        unused = []
        if not self.kafka_security_protocol.endswith("SSL"):
            unused += [n for n, v in (("GUARD_KAFKA_SSL_CAFILE", self.kafka_ssl_cafile),
                                      ("GUARD_KAFKA_SSL_CERTFILE", self.kafka_ssl_certfile)) if v]
        if not self.kafka_security_protocol.startswith("SASL_"):
            unused += [n for n, v in (("GUARD_KAFKA_SASL_USERNAME", self.kafka_sasl_username),
                                      ("GUARD_KAFKA_SASL_PASSWORD", self.kafka_sasl_password)) if v]
        if unused:
            raise ValueError(f"{', '.join(unused)} set, but GUARD_KAFKA_SECURITY_PROTOCOL="
                             f"{self.kafka_security_protocol} does not use them: set the protocol")
        return self
