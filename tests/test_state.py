"""Per-stream state survives the changelog: round trips, and states written by older workers load."""

from __future__ import annotations

from guard.state import Opener, StreamState, dump_state, load_state


def test_round_trip_keeps_an_open_entity():
    state = StreamState(stream_id="s", policy="default", text="abc", base=40,
                        openers={"pii": Opener(start=12, text="-----BEGIN PRIVATE KEY-----")})
    assert load_state(dump_state(state)) == state


def test_state_written_before_openers_existed_loads():
    raw = (b'{"stream_id":"s","policy":"default","tenant":null,"next_seq":3,"base":0,"text":"hi",'
           b'"released":1,"covered":1,"sem_cursor":0,"risk":[],"last_scores":[],"prompt_risk":null,'
           b'"prompt":null,"block_at":null,"block_evidence":[],"block_principle":null,'
           b'"blocked":false,"final":false,"pending":{},"gap_since_ms":null,"updated_ms":5}')
    state = load_state(raw)
    assert state.openers == {} and state.next_seq == 3 and state.text == "hi"


def test_a_state_holding_a_chunk_from_before_the_tenant_check_loads():
    """Chunks of tenant "org/team" were accepted until the pipeline began refusing them; a state
    that holds one behind a gap must still load."""
    raw = (b'{"stream_id": "s", "policy": "default", "next_seq": 1, '
           b'"pending": {"2": {"stream_id": "s", "seq": 2, "text": "x", "tenant": "org/team"}}}')
    assert load_state(raw).pending[2].tenant == "org/team"


def test_an_unreadable_state_is_a_state_error_not_a_crash():
    import pytest

    from guard.errors import GuardError, StateError

    for raw in (b'{"stream_id": "s", "policy": "default", "risk": [null]}', b"not json"):
        with pytest.raises(StateError) as exc:
            load_state(raw)
        assert isinstance(exc.value, GuardError) and exc.value.code == "state-unreadable"
