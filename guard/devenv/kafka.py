"""A real Apache Kafka broker for development and tests, without Docker.

The broker is the genuine ``kafka.Kafka`` server (KRaft, one node acting as broker and controller,
loopback only), run from the Maven Central jars of ``org.apache.kafka:kafka_2.13``: machines here
have Java and Maven but no container engine, and a real broker catches protocol-version and
group-coordination problems that an in-memory fake never shows.

Jars are fetched once into ``<repo>/.cache/kafka/<version>/libs`` (git-ignored); set
``GUARD_KAFKA_HOME`` to any folder whose ``libs/`` holds them instead (an unpacked Kafka
distribution works as is). Where a Docker engine exists, ``GUARD_KAFKA_PROVIDER=testcontainers``
swaps in testcontainers' ``KafkaContainer`` behind the same start/stop/bootstrap surface.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Coroutine, Iterable, Mapping
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Any, NamedTuple, Protocol, Self, TypeVar

import structlog

from guard.devenv._proc import (
    ServiceStartError,
    free_ports,
    repo_root,
    spawn,
    start_error,
    stop_process,
)
from guard.devenv.certs import DevCerts
from guard.errors import ConfigError

log = structlog.get_logger(__name__)

T = TypeVar("T")

#: Kafka release fetched by default; 4.x speaks only the newer protocol versions, which is what
#: production brokers will too.
DEFAULT_KAFKA_VERSION = "4.1.1"
SCALA_BINARY = "2.13"
#: Kafka logs through slf4j 1.x, and the kafka_2.13 pom ships no binding: without this jar the
#: broker would log nothing at all. 2.24.3 is the log4j2 release Kafka 4.1 itself is built with.
LOG_BINDING = ("org.apache.logging.log4j", "log4j-slf4j-impl", "2.24.3")
#: pinned so a fetch today and a fetch next year copy the same jars the same way
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
DEFAULT_CONTAINER_IMAGE = "confluentinc/cp-kafka:7.6.0"
PROVIDERS = ("local", "testcontainers")

_POM = """\
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>guard.devenv</groupId>
  <artifactId>kafka-libs</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_{scala}</artifactId>
      <version>{version}</version>
    </dependency>
    <dependency>
      <groupId>{log_group}</groupId>
      <artifactId>{log_artifact}</artifactId>
      <version>{log_version}</version>
    </dependency>
  </dependencies>
</project>
"""

# Log4j2 to stdout, which the launcher sends to the broker's log file.
_LOG4J2 = """\
status = warn
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = STDOUT
logger.request.name = kafka.request.logger
logger.request.level = WARN
"""


# --------------------------------------------------------------------------------------------
# jars


def kafka_home(version: str = DEFAULT_KAFKA_VERSION, home: Path | None = None) -> Path:
    """Where the jars live: ``home``, else ``$GUARD_KAFKA_HOME``, else the repo cache."""
    if home is not None:
        return home
    env_home = os.environ.get("GUARD_KAFKA_HOME")
    if env_home:
        return Path(env_home)
    return repo_root() / ".cache" / "kafka" / version


def _has_jars(libs: Path) -> bool:
    return any(libs.glob(f"kafka_{SCALA_BINARY}-*.jar"))


def fetch_kafka(
    version: str = DEFAULT_KAFKA_VERSION, home: Path | None = None, *, mvn: str | None = None
) -> Path:
    """Make sure the broker's runtime jars are in ``<home>/libs`` and return that folder.

    Idempotent and cheap once done. Maven resolves the transitive runtime closure of
    ``kafka_2.13`` (server, raft, metadata, storage, coordinators, clients, scala, ...), which is
    exactly what ``kafka.Kafka`` and ``kafka.tools.StorageTool`` need. The jars are copied to a
    temporary sibling folder and renamed into place, so an interrupted fetch never looks complete.
    """
    home = kafka_home(version, home)
    libs = home / "libs"
    if _has_jars(libs):
        return libs
    mvn_bin = mvn or shutil.which("mvn")
    if mvn_bin is None:
        raise ConfigError(
            "Maven (mvn) is needed once to fetch the Kafka jars; install it or set GUARD_KAFKA_HOME"
        )
    home.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    log.info("kafka_fetch_start", version=version, libs=str(libs))
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=home) as tmp:
        pom = Path(tmp) / "pom.xml"
        group, artifact, log_version = LOG_BINDING
        pom.write_text(
            _POM.format(
                scala=SCALA_BINARY,
                version=version,
                log_group=group,
                log_artifact=artifact,
                log_version=log_version,
            ),
            encoding="utf-8",
        )
        staged = Path(tmp) / "libs"
        cmd = [
            mvn_bin,
            "-q",
            "-B",
            "-f",
            str(pom),
            f"{DEPENDENCY_PLUGIN}:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={staged}",
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0 or not _has_jars(staged):
            output = (result.stdout + result.stderr).strip()[-4000:]
            raise ServiceStartError(
                f"fetching Kafka {version} jars with Maven failed (exit {result.returncode}):\n{output}"
            )
        if libs.exists() and not _has_jars(libs):
            shutil.rmtree(libs)
        try:
            staged.rename(libs)
        except OSError:
            if not _has_jars(libs):  # lost a race to another fetch: theirs is as good as ours
                raise
    log.info(
        "kafka_fetch_done",
        version=version,
        jars=len(list(libs.glob("*.jar"))),
        seconds=round(time.monotonic() - started, 1),
    )
    return libs


# --------------------------------------------------------------------------------------------
# readiness and topics (shared by both providers)


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code, even when called inside a running loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def broker_ready(bootstrap: str, *, timeout_s: float = 2.0) -> bool:
    """True once the cluster answers a metadata request listing at least one broker.

    A KRaft broker opens its port before it is unfenced; it is only listed in metadata once it can
    actually serve, so this is the check, not the open port.
    """
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import KafkaError

    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000), metadata_max_age_ms=1000
    )
    try:
        async with asyncio.timeout(timeout_s * 2):
            await admin.start()
            cluster = await admin.describe_cluster()
        return bool(cluster.get("brokers"))
    except (KafkaError, OSError, TimeoutError):
        return False
    finally:
        await admin.close()


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class TopicSpec(NamedTuple):
    """A topic to create; ``config`` holds topic-level settings such as ``cleanup.policy``."""

    name: str
    partitions: int = 1
    config: Mapping[str, str] = MappingProxyType({})
    replication_factor: int = 1


async def create_topics(bootstrap: str, specs: Iterable[TopicSpec], *, timeout_s: float = 30.0,
                        client: Mapping[str, Any] | None = None) -> list[str]:
    """Create topics, skipping those that exist; returns the names actually created. ``client``:
    further aiokafka options (credentials: ``streams.auth.client_options``).

    Idempotent on purpose so every start-up (services, tests, demo) can call it blindly. An existing
    topic is left as is, even if its settings differ.
    """
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError, for_code

    specs = list(specs)
    if not specs:
        return []
    timeout_ms = int(timeout_s * 1000)
    admin = AIOKafkaAdminClient(**{"bootstrap_servers": bootstrap, **(client or {})}, request_timeout_ms=timeout_ms)
    try:
        await admin.start()
        response = await admin.create_topics(
            [
                NewTopic(s.name, s.partitions, s.replication_factor, topic_configs=dict(s.config))
                for s in specs
            ],
            timeout_ms=timeout_ms,
        )
    finally:
        await admin.close()
    created: list[str] = []
    for entry in response.topic_errors:
        name, code = entry[0], entry[1]
        message = entry[2] if len(entry) > 2 else None
        if code == 0:
            created.append(name)
        elif code == TopicAlreadyExistsError.errno:
            log.info("topic_exists", topic=name)
        else:
            raise for_code(code)(f"creating topic {name!r}: {message or 'no message'}")
    log.info("topics_created", topics=created)
    return created


# --------------------------------------------------------------------------------------------
# brokers


class Broker(Protocol):
    """What the rest of the code needs from a dev broker, whichever provider runs it."""

    @property
    def bootstrap(self) -> str: ...

    def start(self) -> str: ...

    def stop(self) -> None: ...

    def is_running(self) -> bool: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


def _cluster_id() -> str:
    """A Kafka-style random cluster id (url-safe base64 of 16 bytes, no padding).

    Ids starting with "-" are redrawn, as Kafka's own Uuid.randomUuid does, because the storage
    tool's argument parser would take them for an option.
    """
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


class KafkaBroker:
    """A single-node KRaft broker in a child JVM, on free loopback ports, in a throw-away folder.

    Construction does nothing; ``start()`` fetches jars if needed, formats storage, launches and
    waits until the broker serves metadata; ``stop()`` shuts it down and deletes its data.
    """

    def __init__(
        self,
        *,
        version: str = DEFAULT_KAFKA_VERSION,
        home: Path | None = None,
        num_partitions: int = 4,
        heap: str = "512m",
        host: str = "127.0.0.1",
        startup_timeout_s: float = 90.0,
        log_path: Path | None = None,
        extra_config: Mapping[str, str] | None = None,
        java: str | None = None,
        fetch: bool = True,
        sasl_users: Mapping[str, str] | None = None,
        tls: DevCerts | None = None,
    ) -> None:
        """``sasl_users`` (user → password): also serve a SASL_PLAINTEXT listener (mechanism PLAIN)
        for them, at ``sasl_bootstrap``, so clients' credentials can be tested on a real broker.
        ``tls``: also serve an SSL listener with the server certificate, at ``tls_bootstrap``
        (client certificates are asked for, not required)."""
        self._version = version
        self._home = home
        self._num_partitions = num_partitions
        self._heap = heap
        self._host = host
        self._startup_timeout_s = startup_timeout_s
        self._log_path = log_path
        self._extra_config = dict(extra_config or {})
        self._java = java
        self._fetch = fetch
        self._sasl_users = dict(sasl_users or {})
        self._sasl_bootstrap: str | None = None
        self._tls = tls
        self._tls_bootstrap: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None
        self._bootstrap: str | None = None
        self._launch: tuple[list[str], int] | None = None  # the JVM's command line and broker port
        #: seconds spent fetching jars in the last start (0 when cached)
        self.fetch_s: float = 0.0
        #: seconds from launch (format included, fetch excluded) until the broker served
        self.startup_s: float = 0.0

    @property
    def bootstrap(self) -> str:
        if self._bootstrap is None:
            raise RuntimeError("KafkaBroker is not started")
        return self._bootstrap

    @property
    def sasl_bootstrap(self) -> str:
        if self._sasl_bootstrap is None:
            raise RuntimeError("KafkaBroker is not started with sasl_users")
        return self._sasl_bootstrap

    @property
    def tls_bootstrap(self) -> str:
        if self._tls_bootstrap is None:
            raise RuntimeError("KafkaBroker is not started with tls")
        return self._tls_bootstrap

    @property
    def log_path(self) -> Path | None:
        return self._resolved_log_path()

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _resolved_log_path(self) -> Path | None:
        if self._log_path is not None:
            return self._log_path
        return self._workdir / "kafka.log" if self._workdir else None

    def _java_bin(self) -> str:
        if self._java:
            return self._java
        java_home = os.environ.get("JAVA_HOME")
        if java_home and (Path(java_home) / "bin" / "java").is_file():
            return str(Path(java_home) / "bin" / "java")
        found = shutil.which("java")
        if found is None:
            raise ConfigError("Java 17+ is needed to run the local Kafka broker (no `java` on PATH)")
        return found

    def _server_properties(self, data_dir: Path, broker_port: int, controller_port: int,
                           sasl_port: int | None = None, tls_port: int | None = None) -> dict[str, str]:
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{self._host}:{controller_port}",
            "listeners": f"PLAINTEXT://{self._host}:{broker_port},CONTROLLER://{self._host}:{controller_port}",
            "advertised.listeners": f"PLAINTEXT://{self._host}:{broker_port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(data_dir),
            "num.partitions": str(self._num_partitions),
            "auto.create.topics.enable": "true",
            "offsets.topic.replication.factor": "1",
            # 50 offsets partitions (the default) make the first group join slow on 2 cores
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "4",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "min.insync.replicas": "1",
            "default.replication.factor": "1",
            "group.initial.rebalance.delay.ms": "0",
            "log.flush.interval.messages": "10000000",
        }
        if sasl_port is not None:
            sasl = f"SASL_PLAINTEXT://{self._host}:{sasl_port}"
            users = " ".join(f'user_{u}="{p}"' for u, p in self._sasl_users.items())
            props["listeners"] += f",{sasl}"
            props["advertised.listeners"] += f",{sasl}"
            props["listener.security.protocol.map"] += ",SASL_PLAINTEXT:SASL_PLAINTEXT"
            props["sasl.enabled.mechanisms"] = "PLAIN"
            props["listener.name.sasl_plaintext.plain.sasl.jaas.config"] = (
                f"org.apache.kafka.common.security.plain.PlainLoginModule required {users};")
        if tls_port is not None and self._tls is not None and self._workdir is not None:
            keystore = self._workdir / "server-keystore.pem"  # PEM keystore: the key, then its chain
            keystore.write_text(self._tls.server_key.read_text() + self._tls.server_cert.read_text())
            props["listeners"] += f",SSL://{self._host}:{tls_port}"
            props["advertised.listeners"] += f",SSL://{self._host}:{tls_port}"
            props["listener.security.protocol.map"] += ",SSL:SSL"
            props.update({"ssl.keystore.type": "PEM", "ssl.keystore.location": str(keystore),
                          "ssl.truststore.type": "PEM", "ssl.truststore.location": str(self._tls.ca_file),
                          "ssl.client.auth": "requested"})
        props.update(self._extra_config)
        return props

    def start(self) -> str:
        """Launch the broker and block until it serves; returns the bootstrap address."""
        if self._proc is not None:
            raise RuntimeError("KafkaBroker already started")
        java = self._java_bin()
        began = time.monotonic()
        if self._fetch:
            libs = fetch_kafka(self._version, self._home)
        else:
            libs = kafka_home(self._version, self._home) / "libs"
            if not _has_jars(libs):
                raise ConfigError(f"no Kafka jars in {libs}; run with fetch=True or `guard services` once")
        self.fetch_s = time.monotonic() - began
        launched = time.monotonic()
        self._workdir = Path(tempfile.mkdtemp(prefix="guard-kafka-"))
        log_path = self._resolved_log_path()
        assert log_path is not None
        try:
            extra = bool(self._sasl_users) + bool(self._tls)
            broker_port, controller_port, *more = free_ports(2 + extra, self._host)
            sasl = more[:1] if self._sasl_users else []
            tls = more[-1:] if self._tls else []
            props = self._server_properties(self._workdir / "data", broker_port, controller_port,
                                            sasl[0] if sasl else None, tls[0] if tls else None)
            props_path = self._workdir / "server.properties"
            props_path.write_text("".join(f"{k}={v}\n" for k, v in props.items()), encoding="utf-8")
            log4j = self._workdir / "log4j2.properties"
            log4j.write_text(_LOG4J2, encoding="utf-8")
            classpath = str(libs / "*")  # the JVM expands the wildcard itself
            common = [f"-Dlog4j2.configurationFile={log4j}", "-Djava.awt.headless=true", "-cp", classpath]
            self._format(java, common, props_path, log_path)
            args = [
                java,
                f"-Xmx{self._heap}",
                "-Xms128m",
                "-XX:+UseG1GC",
                "-XX:MaxGCPauseMillis=20",
                "-XX:+ExplicitGCInvokesConcurrent",
                *common,
                "kafka.Kafka",
                str(props_path),
            ]
            self._proc = spawn(args, log_path=log_path, cwd=self._workdir)
            self._launch = (args, broker_port)
            bootstrap = f"{self._host}:{broker_port}"
            self._wait_ready(broker_port, log_path, launched)
        except BaseException:
            self.stop()
            raise
        self._bootstrap = bootstrap
        self._sasl_bootstrap = f"{self._host}:{sasl[0]}" if sasl else None
        self._tls_bootstrap = f"{self._host}:{tls[0]}" if tls else None
        self.startup_s = time.monotonic() - launched
        log.info(
            "kafka_started",
            bootstrap=bootstrap,
            version=self._version,
            startup_s=round(self.startup_s, 2),
            fetch_s=round(self.fetch_s, 2),
            pid=self._proc.pid,
            log=str(log_path),
        )
        return bootstrap

    def _format(self, java: str, common: list[str], props_path: Path, log_path: Path) -> None:
        # C1 only: the tool runs for a second or two, so JIT warm-up would be wasted work
        args = [java, "-Xmx256m", "-XX:TieredStopAtLevel=1", *common, "kafka.tools.StorageTool"]
        args += ["format", "-t", _cluster_id(), "-c", str(props_path)]
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as out:
            result = subprocess.run(args, stdout=out, stderr=subprocess.STDOUT, timeout=120, check=False)
        if result.returncode != 0:
            raise start_error("Kafka", f"storage format exited with {result.returncode}", log_path)

    def _wait_ready(self, port: int, log_path: Path, launched: float) -> None:
        assert self._proc is not None
        bootstrap = f"{self._host}:{port}"
        deadline = launched + self._startup_timeout_s
        while True:
            code = self._proc.poll()
            if code is not None:
                raise start_error("Kafka", f"broker exited with code {code}", log_path)
            # the port opens late in start-up: probing with a client before then only makes aiokafka
            # log a connection error per attempt
            if _port_open(self._host, port) and run_sync(broker_ready(bootstrap)):
                return
            if time.monotonic() > deadline:
                raise start_error("Kafka", f"not serving after {self._startup_timeout_s:.0f}s", log_path)
            time.sleep(0.25)

    def restart(self, down_s: float = 0.0) -> None:
        """Stop the broker (a controlled shutdown), stay down ``down_s`` seconds, and start it again
        on the same ports and data: what a broker upgrade or a host restart does to its clients."""
        if self._proc is None or self._launch is None or self._workdir is None:
            raise RuntimeError("KafkaBroker is not started")
        args, port = self._launch
        code = stop_process(self._proc, timeout_s=30.0, name="kafka")
        log.info("kafka_stopped_for_restart", exit_code=code, down_s=down_s)
        time.sleep(down_s)
        launched = time.monotonic()
        log_path = self._resolved_log_path()
        assert log_path is not None
        self._proc = spawn(args, log_path=log_path, cwd=self._workdir)
        self._wait_ready(port, log_path, launched)
        log.info("kafka_restarted", bootstrap=self._bootstrap, startup_s=round(time.monotonic() - launched, 2))

    def stop(self) -> None:
        """SIGTERM (a controlled shutdown), wait, kill if stuck; then delete the data folder."""
        if self._proc is not None:
            began = time.monotonic()
            code = stop_process(self._proc, timeout_s=30.0, name="kafka")
            # the JVM reports 143 (128 + SIGTERM) after its shutdown hooks ran: that is a clean stop
            log.info(
                "kafka_stopped",
                pid=self._proc.pid,
                exit_code=code,
                clean=code in (0, 143),
                stop_s=round(time.monotonic() - began, 2),
            )
            self._proc = None
        self._bootstrap = None
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class ContainerBroker:
    """The same surface over testcontainers' ``KafkaContainer``, for machines with Docker.

    testcontainers is imported in ``start()`` only, so machines without it can import this module.
    """

    def __init__(
        self,
        *,
        image: str = DEFAULT_CONTAINER_IMAGE,
        num_partitions: int = 4,
        startup_timeout_s: float = 120.0,
    ) -> None:
        self._image = image
        self._num_partitions = num_partitions
        self._startup_timeout_s = startup_timeout_s
        self._container: Any = None
        self._bootstrap: str | None = None
        self.startup_s: float = 0.0

    @property
    def bootstrap(self) -> str:
        if self._bootstrap is None:
            raise RuntimeError("ContainerBroker is not started")
        return self._bootstrap

    def is_running(self) -> bool:
        return self._container is not None

    def start(self) -> str:
        try:
            from testcontainers.community.kafka import KafkaContainer
        except ImportError:  # testcontainers < 4.14 kept it at the top level
            from testcontainers.kafka import KafkaContainer

        if self._container is not None:
            raise RuntimeError("ContainerBroker already started")
        began = time.monotonic()
        try:
            container = KafkaContainer(image=self._image).with_kraft()
        except Exception as exc:  # docker.errors.DockerException: no engine reachable
            raise ServiceStartError(
                f"testcontainers found no usable Docker engine ({exc}); unset GUARD_KAFKA_PROVIDER "
                "to run the local broker from jars instead"
            ) from exc
        for key, value in {
            "KAFKA_NUM_PARTITIONS": str(self._num_partitions),
            "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "true",
            "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
            "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
            "KAFKA_MIN_INSYNC_REPLICAS": "1",
        }.items():
            container.with_env(key, value)
        self._container = container
        try:
            container.start(timeout=int(self._startup_timeout_s))
            bootstrap = container.get_bootstrap_server()
            deadline = began + self._startup_timeout_s
            while not run_sync(broker_ready(bootstrap)):
                if time.monotonic() > deadline:
                    raise ServiceStartError(f"Kafka container at {bootstrap} not serving metadata")
                time.sleep(0.5)
        except BaseException:
            self.stop()
            raise
        self._bootstrap = bootstrap
        self.startup_s = time.monotonic() - began
        log.info(
            "kafka_container_started",
            bootstrap=bootstrap,
            image=self._image,
            startup_s=round(self.startup_s, 2),
        )
        return bootstrap

    def stop(self) -> None:
        if self._container is not None:
            self._container.stop()
            self._container = None
        self._bootstrap = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def make_broker(
    provider: str | None = None, *, num_partitions: int = 4, log_path: Path | None = None
) -> Broker:
    """The dev broker chosen by ``provider`` or ``$GUARD_KAFKA_PROVIDER`` (default ``local``).

    ``$GUARD_KAFKA_IMAGE`` picks the image for the testcontainers provider.
    """
    chosen = provider or os.environ.get("GUARD_KAFKA_PROVIDER") or "local"
    if chosen == "local":
        return KafkaBroker(num_partitions=num_partitions, log_path=log_path)
    if chosen == "testcontainers":
        image = os.environ.get("GUARD_KAFKA_IMAGE") or DEFAULT_CONTAINER_IMAGE
        return ContainerBroker(image=image, num_partitions=num_partitions)
    raise ConfigError(f"unknown Kafka provider {chosen!r}; known: {', '.join(PROVIDERS)}")
