"""``guard feedback`` and ``guard thresholds``: verdicts in, thresholds out, through Kafka only.

``guard feedback`` sends one verdict on a decision to ``guard.feedback`` (the tuner reads it).
``guard thresholds`` reads the compacted ``guard.thresholds`` topic from the start and shows the
thresholds in force (policy defaults plus the tuned overrides) or the history of events, or pins /
unpins a threshold. A pin is an event on the same topic, so workers and the tuner see it the way they
see every change; a pinned threshold holds its value until it is unpinned.

The pieces that build messages and tables are pure functions (tested without a broker); the
``*_main`` functions only parse arguments, read settings and do the I/O.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from guard.errors import GuardError, SchemaError
from guard.messages import TENANT_ID_RULE, Feedback, ThresholdChange, Verdict, decode, encode, is_tenant_id
from guard.policy.load import PolicySet
from guard.thresholds import ThresholdKey, Thresholds
from guard.types import CATEGORIES

if TYPE_CHECKING:
    from guard.settings import Settings

VERDICTS: tuple[Verdict, ...] = ("false_positive", "false_negative", "correct")


def _now_ms() -> int:
    return int(time.time() * 1000)


# -- feedback ----------------------------------------------------------------------------------------


def stream_of(decision_id: str) -> str:
    """The stream a decision belongs to: decision ids are ``stream_id:seq``."""
    stream, sep, seq = decision_id.rpartition(":")
    if not sep or not stream or not seq.isdigit():
        raise ValueError(f"decision id {decision_id!r} is not 'stream_id:seq'; pass --stream-id")
    return stream


def validate_feedback(raw: object) -> Feedback:
    """Decode a feedback record; ``SchemaError`` (dead-lettered) says what is wrong with it."""
    if not isinstance(raw, bytes | bytearray):
        raise SchemaError("record value is empty")
    fb = decode(Feedback, bytes(raw))
    if fb.category not in CATEGORIES:
        raise SchemaError(f"unknown category {fb.category!r}; known: {list(CATEGORIES)}")
    if not fb.decision_id.startswith(fb.stream_id + ":"):
        raise SchemaError("decision_id does not belong to stream_id (expected 'stream_id:seq')")
    return fb


def make_feedback(decision_id: str, category: str, verdict: str, source: str,
                  stream_id: str | None = None, ts_ms: int | None = None) -> Feedback:
    """A verdict as the tuner will accept it (the same validation runs here and there)."""
    fb = Feedback(decision_id=decision_id, stream_id=stream_id or stream_of(decision_id),
                  category=category, verdict=verdict,  # type: ignore[arg-type]
                  source=source, ts_ms=_now_ms() if ts_ms is None else ts_ms)
    return validate_feedback(encode(fb))


# -- thresholds --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One threshold as ``guard thresholds show`` prints it."""

    policy: str
    category: str
    tenant: str | None
    default: float
    value: float
    version: int
    pinned: bool
    status: str
    tuned: bool


def rows(policies: PolicySet, thresholds: Thresholds) -> list[Row]:
    """Every semantic threshold of every policy, plus tenant overrides, in a stable order."""
    out: list[Row] = []
    defaults: dict[tuple[str, str], tuple[float, bool]] = {}
    for name, spec in sorted(policies.policies.items()):
        for p in spec.principles:
            if "semantic" in p.detectors:
                for c in p.categories:
                    defaults[(name, c)] = (p.threshold, p.tuning is not None)
    keys = {ThresholdKey(None, p, c) for (p, c) in defaults}
    keys |= {k for k in thresholds.overrides if (k.policy, k.category) in defaults}
    for k in sorted(keys, key=lambda k: (k.policy, CATEGORIES.index(k.category)
                                         if k.category in CATEGORIES else 99, k.tenant or "")):
        default, tuned = defaults[(k.policy, k.category)]
        o = thresholds.entry(k)
        superseded = o is not None and o.base is not None and o.base != default  # the file was edited
        out.append(Row(k.policy, k.category, k.tenant, default,
                       thresholds.get(k.policy, k.category, k.tenant, default),
                       o.version if o else 0, bool(o and o.pinned and not superseded),
                       "superseded" if superseded else o.status if o else "default", tuned))
    return out


def select(items: Sequence[Row], policy: str | None, category: str | None,
           tenant: str | None) -> list[Row]:
    return [r for r in items if (policy is None or r.policy == policy)
            and (category is None or r.category == category)
            and (tenant is None or r.tenant == tenant)]


def format_rows(items: Sequence[Row]) -> str:
    head = f"{'policy':<12} {'category':<14} {'tenant':<10} {'default':>7} {'value':>7} " \
           f"{'version':>7}  state"
    lines = [head]
    for r in items:
        state = "pinned" if r.pinned else (r.status if r.tuned or r.status != "default" else "untuned")
        lines.append(f"{r.policy:<12} {r.category:<14} {r.tenant or '*':<10} {r.default:>7.4f} "
                     f"{r.value:>7.4f} {r.version:>7}  {state}")
    return "\n".join(lines)


def format_history(events: Sequence[tuple[int, ThresholdChange]]) -> str:
    lines = []
    for offset, ch in events:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ch.ts_ms / 1000)) if ch.ts_ms else "-"
        lines.append(f"{offset:>6} v{ch.version:<5} {when}Z {ThresholdKey.of(ch).topic_key:<32} "
                     f"{ch.status:<9} {ch.old:.4f} -> {ch.value:.4f}  {ch.reason}")
    return "\n".join(lines) if lines else "(no threshold events)"


def make_pin(policies: PolicySet, thresholds: Thresholds, policy: str, category: str,
             tenant: str | None, *, pin: bool, value: float | None, by: str,
             ts_ms: int | None = None) -> ThresholdChange:
    """The event that pins (at ``value``, default: the value in force) or unpins one threshold.

    Unpinning a key the tuner moves (the policy-wide key under ``scope: policy``, a tenant's under
    ``scope: tenant``) hands it back to the tuner at its value. Any other key is *released*: it
    falls back to the policy-wide threshold, or the policy file's, as if never pinned. (An
    "unpinned" tenant key under policy-scope tuning stayed at the pinned value for good.)

    Its version follows every event read so far. A tuner change published in the same instant can
    take the same version for the same key; the one later in the topic then wins (the rule
    compaction agrees with), and ``guard thresholds`` checks it was this one (``took_effect``).
    """
    spec = policies.policies.get(policy)
    if spec is None:
        raise ValueError(f"unknown policy {policy!r}; known: {sorted(policies.policies)}")
    defaults = {c: p.threshold for p in spec.principles if "semantic" in p.detectors
                for c in p.categories}
    if category not in defaults:
        raise ValueError(f"policy {policy!r} has no semantic threshold for {category!r}; "
                         f"known: {sorted(defaults)}")
    if tenant is not None and not is_tenant_id(tenant):
        raise ValueError(f"tenant {tenant!r}: {TENANT_ID_RULE}, so no chunk carries this one")
    current = thresholds.get(policy, category, tenant, defaults[category])
    tuning = next(p.tuning for p in spec.principles if "semantic" in p.detectors and category in p.categories)
    # a key the tuner moves: tuned, not frozen by the policy, and at the scope tuning works on
    tuned = (tuning is not None and not tuning.pinned and tuning.max_changes_per_hour > 0
             and (tuning.scope == "tenant") == (tenant is not None))
    if pin:
        verb, new = "pinned", current if value is None else value
    elif tuned:
        verb, new = "unpinned", current
    else:
        verb = "released"
        new = thresholds.get(policy, category, None, defaults[category]) if tenant is not None \
            else defaults[category]
    if not 0.0 <= new <= 1.0:
        raise ValueError(f"a threshold is a probability in [0, 1], not {new}")
    return ThresholdChange(policy=policy, category=category, tenant=tenant, old=current, value=new,
                           version=thresholds.version + 1, status=verb, pinned=pin,
                           reason=f"{verb} by {by} (guard thresholds)",
                           ts_ms=_now_ms() if ts_ms is None else ts_ms, base=defaults[category])


def took_effect(thresholds: Thresholds, change: ThresholdChange) -> bool:
    """Whether ``change`` is the event in force for its key, read back from the topic: a concurrent
    event for the same key (a tuner change of the same or a newer version) would have replaced it."""
    o = thresholds.entry(ThresholdKey.of(change))
    return o is not None and (o.version, o.status, o.ts_ms, o.reason) == (
        change.version, change.status, change.ts_ms, change.reason)


# -- commands ----------------------------------------------------------------------------------------


async def _send(s: Settings, topic: str, key: str, value: bytes) -> None:
    from aiokafka import AIOKafkaProducer

    from streams.auth import client_options

    producer = AIOKafkaProducer(**client_options(s), acks="all", linger_ms=0)
    try:
        await producer.start()  # inside: a broker that cannot be reached still closes the producer
        await producer.send_and_wait(topic, key=key.encode(), value=value)
    finally:
        await producer.stop()


async def _ensure_topic(s: Settings, topic: str) -> None:
    """Create the thresholds topic compacted before the first read (a broker that auto-creates
    topics would make it on that read, uncompacted); an existing topic is left as it is."""
    from guard.devenv.kafka import TopicSpec, create_topics

    try:
        from streams.auth import client_options

        await create_topics(s.kafka_bootstrap, [TopicSpec(topic, 1, {"cleanup.policy": "compact"})],
                            client=client_options(s))
    except Exception as exc:  # noqa: BLE001 - no admin rights: reading still works
        print(f"guard thresholds: could not create {topic!r}: {exc}", file=sys.stderr)


def _settings(bootstrap: str | None) -> Settings:
    """Settings for a one-shot command; its logs (warnings only) go to stderr, output to stdout."""
    from guard.logging import configure
    from guard.settings import Settings

    configure(json=False, level="WARNING")
    return Settings(**({"kafka_bootstrap": bootstrap} if bootstrap else {}))


def feedback_main(argv: list[str] | None = None) -> int:
    """Send one verdict on a decision to the feedback topic."""
    p = argparse.ArgumentParser(prog="guard feedback", description=feedback_main.__doc__)
    p.add_argument("--decision-id", required=True, help="the decision's id (stream_id:seq)")
    p.add_argument("--category", required=True, choices=CATEGORIES)
    p.add_argument("--verdict", required=True, choices=VERDICTS)
    p.add_argument("--source", required=True, help="who says so (reviewer id, 'user', a queue name)")
    p.add_argument("--stream-id", help="default: derived from the decision id")
    p.add_argument("--bootstrap", help="Kafka bootstrap (overrides GUARD_KAFKA_BOOTSTRAP)")
    args = p.parse_args(argv)
    s = _settings(args.bootstrap)
    try:
        fb = make_feedback(args.decision_id, args.category, args.verdict, args.source, args.stream_id)
    except (ValueError, GuardError) as exc:
        print(f"guard feedback: {exc}", file=sys.stderr)
        return 2
    asyncio.run(_send(s, s.topic_feedback, fb.stream_id, encode(fb)))
    print(encode(fb).decode())
    return 0


PIN_ATTEMPTS = 3


def thresholds_main(argv: list[str] | None = None) -> int:
    """Show the thresholds in force, their history, or pin / unpin one."""
    from guard.policy.load import PolicyStore
    from streams.follower import read_all

    p = argparse.ArgumentParser(prog="guard thresholds", description=thresholds_main.__doc__)
    p.add_argument("action", nargs="?", default="show", choices=("show", "history", "pin", "unpin"))
    p.add_argument("--policy")
    p.add_argument("--category", choices=CATEGORIES)
    p.add_argument("--tenant", help="a tenant's own threshold (default: the policy-wide one)")
    p.add_argument("--value", type=float, help="pin at this value (default: the value in force)")
    p.add_argument("--by", default=None, help="who pins (default: the login name)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--bootstrap", help="Kafka bootstrap (overrides GUARD_KAFKA_BOOTSTRAP)")
    p.add_argument("--timeout", type=float, default=15.0, help="seconds to read the topic")
    args = p.parse_args(argv)
    s = _settings(args.bootstrap)
    policies = PolicyStore(s.policy_dir).current
    asyncio.run(_ensure_topic(s, s.topic_thresholds))
    from streams.auth import client_options

    def read() -> tuple[Thresholds, list[tuple[int, ThresholdChange]]]:
        """The topic as it is now; a TimeoutError is reported by ``guard`` in one line."""
        return asyncio.run(read_all(s.kafka_bootstrap, s.topic_thresholds, args.timeout, client_options(s)))

    thresholds, history = read()
    if args.action == "show":
        items = select(rows(policies, thresholds), args.policy, args.category, args.tenant)
        if args.json:
            for r in items:
                print(json.dumps(r.__dict__))
        else:
            print(format_rows(items))
            print(f"\nthresholds version {thresholds.version} ({len(history)} events on "
                  f"{s.topic_thresholds})")
        return 0
    if args.action == "history":
        events = [(o, ch) for o, ch in history
                  if (args.policy is None or ch.policy == args.policy)
                  and (args.category is None or ch.category == args.category)
                  and (args.tenant is None or ch.tenant == args.tenant)]
        if args.json:
            for o, ch in events:
                print(json.dumps({"offset": o, **json.loads(encode(ch))}))
        else:
            print(format_history(events))
        return 0
    if not args.policy or not args.category:
        print("guard thresholds: pin/unpin need --policy and --category", file=sys.stderr)
        return 2
    value = args.value
    for _ in range(PIN_ATTEMPTS):
        try:
            change = make_pin(policies, thresholds, args.policy, args.category, args.tenant,
                              pin=args.action == "pin", value=value, by=args.by or getpass.getuser())
        except ValueError as exc:
            print(f"guard thresholds: {exc}", file=sys.stderr)
            return 2
        if change.status == "pinned":
            value = change.value  # a retry freezes what the operator saw, not what replaced it
        asyncio.run(_send(s, s.topic_thresholds, ThresholdKey.of(change).topic_key,
                          encode(change)))
        try:
            thresholds, _ = read()
        except TimeoutError as exc:
            raise TimeoutError(f"sent, but could not read it back: {exc}") from None
        if took_effect(thresholds, change):
            print(encode(change).decode())
            return 0
        print(f"guard thresholds: a concurrent change to {ThresholdKey.of(change).topic_key} "
              "replaced this one; trying again over it", file=sys.stderr)
    print(f"guard thresholds: {args.action} did not take effect after {PIN_ATTEMPTS} attempts "
          "(the key keeps changing); see `guard thresholds history`", file=sys.stderr)
    return 1
