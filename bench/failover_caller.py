"""The failover suite's caller: one streamed chat completion as an OpenAI SDK sees it.

A stream that ends (with or without ``[DONE]``) is a success with whatever text arrived: that is
how a client reads it, so a truncated answer presented as complete shows up as one. An error
status or an ``{"error"}`` event is an error; no end inside the limit is a hang."""
from __future__ import annotations

import http.client
import json
import socket
import time

from failover_wall import WORDS

PROMPT = "Explain in exactly sixty words why a gateway earns trust only when the provider behind it misbehaves."


def call(system, model: str, limit: float) -> dict:
    """Return ``{outcome: success|error|hang, seconds, content, model, usage, error}``."""
    started = time.monotonic()
    deadline = started + limit
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": PROMPT}], "stream": True,
                       "stream_options": {"include_usage": True}, "max_tokens": 2 * len(WORDS)})
    result = {"outcome": "hang", "content": "", "model": None, "usage": None, "error": None}
    conn = http.client.HTTPConnection("127.0.0.1", system.port, timeout=limit)
    try:
        conn.request("POST", system.path, body, {"Content-Type": "application/json", **system.headers})
        sock = conn.sock  # the response reads from it even after the connection lets it go
        response = conn.getresponse()
        if response.status != 200:
            data = response.read()
            result.update(outcome="error", error=f"HTTP {response.status}: {error_text(data)}")
            return result
        for raw in response:
            if time.monotonic() > deadline:
                return result
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            line = raw.strip()
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                break
            try:
                event = json.loads(data)
            except ValueError:
                continue  # an SDK skips what it cannot parse
            if not isinstance(event, dict):
                continue
            if event.get("error"):
                result.update(outcome="error", error=error_text(data))
                return result
            result["model"] = event.get("model") or result["model"]
            if event.get("usage"):
                result["usage"] = event["usage"]
            for choice in event.get("choices") or []:
                result["content"] += (choice.get("delta") or {}).get("content") or ""
        result["outcome"] = "success"
        return result
    except (socket.timeout, TimeoutError):
        return result
    except (OSError, http.client.HTTPException) as exc:
        result.update(outcome="error", error=f"connection: {type(exc).__name__}")
        return result
    finally:
        result["seconds"] = round(time.monotonic() - started, 3)
        conn.close()


def error_text(data: bytes) -> str:
    try:
        error = json.loads(data).get("error")
    except (ValueError, AttributeError):
        return data[:120].decode("utf-8", "replace")
    if isinstance(error, dict):
        return f"{error.get('code') or error.get('type')}: {str(error.get('message'))[:100]}"
    return str(error)[:120]
