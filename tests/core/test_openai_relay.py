"""The OpenAI stream relay (core/sse.py with core/openai_sse.py) on blocks as a fast upstream
client reads them: several events at once."""
from __future__ import annotations

import json

from agent_portal.sse import StreamState, relay

from helpers import PiecesBody


def chunk(text: str) -> bytes:
    return b"data: " + json.dumps({"id": "c1", "choices": [{"index": 0, "delta": {"content": text}}]}).encode() + b"\n\n"


def test_whole_events_before_a_burst_of_malformed_ones_in_the_same_block_reach_the_client():
    block = chunk("tok0 ") + chunk("tok1 ") + b"data: {not json\n\n" * 5
    ended = []
    out = b"".join(relay(PiecesBody(), block, fresh_state(), 5, 5, ended.append))
    assert out.startswith(chunk("tok0 ") + chunk("tok1 "))  # what was counted was also relayed
    assert b'"code": "upstream_malformed"' in out
    assert ended[0].outcome == "upstream_malformed" and "".join(ended[0].text) == "tok0 tok1 "


def test_a_block_of_well_formed_events_is_relayed_as_it_came():
    block = chunk("a") + chunk("b") + b'data: {"id": "c1", "choices": [{"index": 0, "delta": {}, ' \
        b'"finish_reason": "stop"}]}\n\ndata: [DONE]\n\n'
    out = b"".join(relay(PiecesBody(), block, fresh_state(), 5, 5, lambda state: None))
    assert out == block


def fresh_state() -> StreamState:  # noqa: N802 - reads as the state a call starts with
    return StreamState(strip_usage=True)
