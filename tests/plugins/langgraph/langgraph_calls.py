"""What the langgraph tests share: the plugin's sections for a server, an SSE body's events, a
new thread, and the example graphs' words."""
from __future__ import annotations

import json

HELLO = {"messages": [{"role": "user", "content": "hello there"}]}
CHATTY_ANSWER = "The portal streams this answer token by token."


def agent_sections(url: str, **langgraph) -> dict:
    return {"langgraph": {"url": url, "heartbeat_seconds": 0.3, "refresh_seconds": 5, **langgraph},
            "chat": {"heartbeat_seconds": 0.3, "retries": 0, "between_chunks_timeout_seconds": 10},
            "ledger": {"flush_seconds": 0.05}, "observability": {"health_cache_seconds": 0}}


def events_of(body: bytes) -> list[tuple[str, object]]:
    """Return (event, data) of an SSE body, heartbeats left out."""
    parsed = []
    for block in body.replace(b"\r\n", b"\n").split(b"\n\n"):
        lines = [line for line in block.split(b"\n") if line and not line.startswith(b":")]
        if not lines:
            continue
        name = next((line[6:].strip().decode() for line in lines if line.startswith(b"event:")), "message")
        data = b"\n".join(line[5:].strip() for line in lines if line.startswith(b"data:"))
        parsed.append((name, json.loads(data) if data else None))
    return parsed


def new_thread(client, headers, **body) -> str:
    response = client.post("/agents/threads", json=body, headers=headers)
    assert response.status_code == 200, response.data
    return response.json["thread_id"]
