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
