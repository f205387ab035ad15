"""JSON-RPC 2.0 as MCP uses it: the shapes of answers and errors, reading a caller's message,
and reading an upstream's answer, which streamable HTTP sends as JSON or as an SSE stream."""
from __future__ import annotations

import json

# JSON-RPC's own codes, and MCP's
PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS, INTERNAL_ERROR = -32700, -32600, -32601, -32602, -32603
REQUEST_TIMEOUT = -32001  # the SDKs' code for a request that timed out
# the portal's own, in the range JSON-RPC leaves to servers
UPSTREAM_ERROR, FORBIDDEN, LIMITED = -32010, -32011, -32012


class RPCError(Exception):
    """A JSON-RPC error to answer the caller with; ``data`` carries the portal's error code."""

    def __init__(self, code: int, message: str, data: dict | None = None):
        super().__init__(message)
        self.code, self.message, self.data = code, message, data

    def answer(self, request_id) -> dict:
        """Return the error as a JSON-RPC answer to ``request_id``."""
        error = {"code": self.code, "message": self.message}
        if self.data:
            error["data"] = self.data
        return {"jsonrpc": "2.0", "id": request_id, "error": error}


def result(request_id, value) -> dict:
    """Return a JSON-RPC answer to ``request_id`` carrying ``value``."""
    return {"jsonrpc": "2.0", "id": request_id, "result": value}


def read_message(raw: bytes) -> dict:
    """Return the caller's one JSON-RPC message (a request, notification or response).

    Raises :class:`RPCError`: -32700 for bad JSON, -32600 for a batch (removed from MCP in
    2025-06-18) or anything that is not a JSON-RPC 2.0 message.
    """
    try:
        message = json.loads(raw)
    except (ValueError, RecursionError, UnicodeDecodeError):
        raise RPCError(PARSE_ERROR, "The body is not valid JSON.") from None
    if isinstance(message, list):
        raise RPCError(INVALID_REQUEST, "Batches are not accepted: send one JSON-RPC message per request.")
    if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
        raise RPCError(INVALID_REQUEST, "The body is not a JSON-RPC 2.0 message.")
    has_method = isinstance(message.get("method"), str)
    if "method" in message and not has_method:
        raise RPCError(INVALID_REQUEST, "`method` must be a string.")
    if "id" in message and (isinstance(message["id"], bool) or not isinstance(message["id"], (str, int))):
        raise RPCError(INVALID_REQUEST, "`id` must be a string or an integer.")
    if not has_method and not ("result" in message or "error" in message):
        raise RPCError(INVALID_REQUEST, "The message is neither a request, a notification nor a response.")
    if "params" in message and not isinstance(message["params"], dict):
        raise RPCError(INVALID_PARAMS, "`params` must be an object.")
    return message


def sse_messages(chunks, limit: int):
    """Yield each JSON-RPC message of an SSE stream read from ``chunks`` (bytes), as a dict;
    an event whose data is not JSON is skipped (comments and pings are). Raises
    :class:`RPCError` once the stream passes ``limit`` bytes."""
    buffer, seen = b"", 0
    for chunk in chunks:
        seen += len(chunk)
        if seen > limit:
            raise RPCError(UPSTREAM_ERROR, f"The server's answer is over {limit} bytes (plugins.mcp.max_result_bytes).",
                           {"code": "result_too_large"})
        buffer += chunk.replace(b"\r\n", b"\n")
        while b"\n\n" in buffer:
            event, buffer = buffer.split(b"\n\n", 1)
            data = b"\n".join(line[5:].removeprefix(b" ") for line in event.split(b"\n") if line.startswith(b"data:"))
            if not data:
                continue
            try:
                message = json.loads(data)
            except ValueError:
                continue
            if isinstance(message, dict):
                yield message


def sse_event(message: dict) -> bytes:
    """Return ``message`` as one SSE event, as streamable HTTP sends it."""
    return b"event: message\ndata: " + json.dumps(message, separators=(",", ":")).encode() + b"\n\n"
