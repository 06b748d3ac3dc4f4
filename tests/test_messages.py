"""Wire messages: validated at the edge, versioned, round-trip exactly."""

from __future__ import annotations

import pytest

from guard.errors import SchemaError
from guard.messages import Chunk, Decision, Feedback, decision_id, decode, encode


def test_chunk_round_trip():
    c = Chunk(stream_id="s1", seq=3, text="héllo", final=True, tenant="t", prompt="q")
    assert decode(Chunk, encode(c)) == c


@pytest.mark.parametrize("raw, field", [
    (b'{"stream_id": "s", "seq": -1}', "seq"),
    (b'{"stream_id": "", "seq": 0}', "stream_id"),
    (b'{"seq": 0}', "stream_id"),
    (b'{"stream_id": "s", "seq": 0, "extra": 1}', "extra"),
    (b'{"stream_id": "s", "seq": "0"}', "seq"),
    (b'{"v": 2, "stream_id": "s", "seq": 0}', "v"),
])
def test_invalid_chunks_name_the_field(raw, field):
    with pytest.raises(SchemaError, match=field):
        decode(Chunk, raw)


def test_malformed_json_is_a_schema_error_without_payload():
    with pytest.raises(SchemaError) as exc:
        decode(Chunk, b"{not json secret@example.com")
    assert "secret@example.com" not in str(exc.value)


def test_decision_id_is_deterministic():
    assert decision_id("s", 4) == decision_id("s", 4) != decision_id("s", 5)


def test_feedback_verdicts_are_closed():
    with pytest.raises(SchemaError):
        decode(Feedback, b'{"decision_id":"s:1","stream_id":"s","category":"hate",'
                         b'"verdict":"maybe","source":"r"}')


def test_decision_defaults_encode():
    d = Decision(decision_id="s:0", stream_id="s", seq=0, action="allow", text="x", released_offset=1)
    assert decode(Decision, encode(d)) == d


@pytest.mark.parametrize("old", [2.0, -1.0])
def test_a_threshold_event_whose_old_value_is_no_probability_is_refused(old):
    """A rejected change puts ``old`` back in force: out of range it would disable a principle
    (2.0) or fire it on everything (-1), so it is checked like ``value``."""
    from guard.messages import ThresholdChange

    raw = (b'{"policy": "default", "category": "hate", "old": %s, "value": 0.5, "version": 5, '
           b'"status": "rejected"}' % str(old).encode())
    with pytest.raises(SchemaError, match="old"):
        decode(ThresholdChange, raw)
    assert decode(ThresholdChange, raw.replace(str(old).encode(), b"0.4")).old == 0.4


@pytest.mark.parametrize("tenant", ["org/team", "*", ""])
def test_a_tenant_id_that_would_break_its_threshold_key_is_refused(tenant):
    """Threshold keys are ``tenant/policy/category`` with ``*`` for every tenant: "org/team" read
    back as tenant "org", policy "team", and "*" took the policy-wide key. A threshold event is
    refused at decode; a chunk where it enters the pipeline (tests/test_pipeline.py), since saved
    states hold chunks from before the check."""
    from guard.messages import ThresholdChange

    event = ('{"policy": "default", "category": "hate", "tenant": "%s", "old": 0.5, "value": 0.6, '
             '"version": 1}' % tenant).encode()
    with pytest.raises(SchemaError, match="tenant"):
        decode(ThresholdChange, event)
    assert decode(ThresholdChange, event.replace(b'"tenant": "%s"' % tenant.encode(),
                                                 b'"tenant": "org-team"')).tenant == "org-team"
