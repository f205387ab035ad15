"""Reaching an upstream: what each failure before the first byte leads to, and failures mapped
to answers.

| failure before the first byte                     | what happens                                 |
|---------------------------------------------------|----------------------------------------------|
| 429 with Retry-After within retry_max_wait        | the same target again, after that wait       |
| 429 without it, or asking to wait longer          | the next target                              |
| 500, 502, 503, 504; connection reset; empty body  | the same target again (``retries``), then the next |
| connect refused, connect or first-token timeout   | the next target at once                      |
| 401/403 (the portal's own key refused)            | the next target; 502 upstream_auth_failed    |
| 404, context length exceeded                      | the next target (another may have the model, a larger window) |
| any other 4xx (the caller's request, content filters) | answered as it is, never retried         |
| the call's time budget (call_budget_seconds) spent | 504 call_budget_exceeded                    |
| a target whose circuit is open                    | skipped                                      |
"""
from __future__ import annotations

import json
import socket
import time
from email.utils import parsedate_to_datetime

import orjson
import urllib3
from flask import Response
from geventhttpclient.response import HTTPParseError
from urllib3.exceptions import ConnectTimeoutError, HTTPError, NewConnectionError, ReadTimeoutError

from agent_portal import PortalError
from agent_portal.sse import close_upstream
from agent_portal.upstream import UpstreamFailure
from agent_portal.upstream_client import ConnectFailed

RETRY_SAME = {500, 502, 503, 504}
NEXT_TARGET_CODES = {"context_length_exceeded", "model_not_found", "prefill_not_supported"}


RETRY_AFTER_HEADERS = (("retry-after-ms", 0.001), ("retry-after", 1.0),  # OpenAI's, then HTTP's
                       # LiteLLM's proxy passes the provider's own headers on with this prefix
                       ("llm_provider-retry-after-ms", 0.001), ("llm_provider-retry-after", 1.0))


def _retry_after(response) -> float | None:
    """Return the seconds a 429 asks to wait: ``retry-after-ms``, ``Retry-After`` (seconds or an
    HTTP date), or the same passed on by LiteLLM (``llm_provider-``); None when none says."""
    if response is None:
        return None
    for name, unit in RETRY_AFTER_HEADERS:
        value = response.headers.get(name)
        if value is None:
            continue
        try:
            return max(0.0, float(value) * unit)
        except ValueError:
            pass
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError, IndexError):
            continue
    return None


def _backoff(attempt: int, cap: float) -> float:
    return min(cap, 0.1 * (2 ** attempt))


def set_read_timeout(response, seconds: float) -> None:
    """Give a stream's socket a new read timeout (best effort)."""
    sock = getattr(getattr(response, "connection", None), "sock", None)
    if sock is not None:
        try:
            sock.settimeout(seconds)
        except OSError:
            pass


def error_code(payload: bytes) -> tuple[str | None, str]:
    """Return (the error's code, its message) from an OpenAI-style error body."""
    try:
        data = json.loads(payload)
        error = data.get("error", data.get("detail"))
        if isinstance(error, dict):
            code = error.get("code") or error.get("type")
            return (str(code) if code else None), str(error.get("message") or error)
        if error:
            return None, str(error)
    except (ValueError, AttributeError, TypeError):
        pass
    return None, ""


def open_upstream(settings, targets: list, build_payload, stream: bool, request_id: str, actor,
                  session_id: str | None = None, breaker=None, deadline: float | None = None,
                  refused=None):
    """Send the call to the first target that answers, following the table above.

    Returns ``(response, target, first_block, ttft_mark)``; ``first_block`` is the first bytes
    of a stream (b"" when not streaming). Raises :class:`UpstreamFailure` when every target
    failed, when the caller's own request was refused, or when the time budget ran out. With
    ``refused`` (a continuation: the request carries a prefill), a 400 or 422 is the target
    refusing the prefill, whatever its code or words: ``refused(target)`` is told and the next
    target asked.
    """
    last = UpstreamFailure(502, "No upstream could be reached.", "upstream_unreachable")
    deadline = deadline or time.monotonic() + settings.call_budget
    for target in targets:
        if breaker is not None and not breaker.allow(target):
            last = UpstreamFailure(503, f"{target.backend.name}/{target.upstream_model} is failing; its circuit "
                                   "is open for a while.", "circuit_open")
            continue
        body = json.dumps(build_payload(target)).encode()
        headers = target.backend.request_headers(request_id, actor, session_id)
        for attempt in range(settings.retries + 1):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise UpstreamFailure(504, f"No upstream answered within the call's budget of "
                                      f"{settings.call_budget:g}s.", "call_budget_exceeded")
            timeout = urllib3.Timeout(connect=min(settings.connect, remaining),
                                      read=min(settings.first_byte, remaining))
            first_token_by = time.monotonic() + min(settings.first_byte, remaining)
            response = None
            try:
                response = target.backend.send_chat(body, headers, timeout, stream)
                status = response.status
                if status == 429:
                    payload, wait = response.data, _retry_after(response)
                    close_upstream(response)
                    last = UpstreamFailure(429, _upstream_message(payload, status), "upstream_rate_limited",
                                           headers={"Retry-After": str(int(wait + 0.999))}
                                           if wait is not None else None)
                    if wait is not None and wait <= settings.retry_max_wait and attempt < settings.retries \
                            and time.monotonic() + wait < deadline:
                        time.sleep(wait)
                        continue
                    break
                if status in RETRY_SAME:
                    payload = response.data
                    close_upstream(response)
                    last = UpstreamFailure(502, _upstream_message(payload, status), "upstream_error")
                    _failed(breaker, target)
                    if attempt < settings.retries:
                        time.sleep(min(_backoff(attempt, settings.retry_max_wait), max(0.0, deadline - time.monotonic())))
                        continue
                    break
                if status in (401, 403):
                    payload = response.data
                    close_upstream(response)
                    _failed(breaker, target)
                    # the caller's credentials are fine; the portal's own upstream key is not
                    last = UpstreamFailure(502, "The upstream refused the portal's credentials: "
                                           + _upstream_message(payload, status), "upstream_auth_failed")
                    break
                if status >= 400:
                    payload = response.data
                    close_upstream(response)
                    code, message = error_code(payload)
                    failure = UpstreamFailure(status, message or _upstream_message(payload, status),
                                              "upstream_client_error", body=payload)
                    too_long = code == "context_length_exceeded" or "context length" in message.lower()
                    if refused is not None and status in (400, 422) and not too_long:
                        refused(target)
                        last = failure
                        break
                    if status == 404 or code in NEXT_TARGET_CODES or "context length" in message.lower():
                        last = failure
                        break
                    raise failure
                if not stream:
                    _succeeded(breaker, target)
                    return response, target, b"", time.monotonic()
                first = response.read1(65536)
                if not first:
                    close_upstream(response)
                    last = UpstreamFailure(502, "The upstream closed the stream before any data.", "upstream_empty")
                    _failed(breaker, target)
                    continue
                first = read_to_first_content(response, first, first_token_by)
                set_read_timeout(response, settings.stream_read_timeout)
                _succeeded(breaker, target)
                return response, target, first, time.monotonic()
            except UpstreamFailure:
                raise
            except (NewConnectionError, ConnectFailed) as exc:  # (urllib3's is a ConnectTimeoutError)
                last = UpstreamFailure(502, f"The upstream refused the connection ({exc.__class__.__name__}).",
                                       "upstream_unreachable")
                _failed(breaker, target)
                _close(response)
                break
            except (ReadTimeoutError, ConnectTimeoutError, TimeoutError, socket.timeout) as exc:
                last = UpstreamFailure(504, f"The upstream did not answer in time ({exc.__class__.__name__}).",
                                       "upstream_timeout")
                _failed(breaker, target)
                _close(response)
                break  # a timeout is not a reason to ask the same target again
            except (HTTPError, HTTPParseError, OSError) as exc:
                last = UpstreamFailure(502, f"The upstream refused or reset the connection ({exc.__class__.__name__}).",
                                       "upstream_unreachable")
                _failed(breaker, target)
                _close(response)
                if attempt < settings.retries:
                    time.sleep(min(_backoff(attempt, settings.retry_max_wait), max(0.0, deadline - time.monotonic())))
    raise last


FIRST_BLOCK_LIMIT = 1024 * 1024


def read_to_first_content(response, first: bytes, deadline: float) -> bytes:
    """Return a stream's first bytes up to its first token: a chunk with content, reasoning or
    a tool call, or its end (a finish reason, usage, ``[DONE]``, an error event, the body closing).
    A role-only chunk and SSE comments are not a first token. Raises ``socket.timeout`` when
    none came by ``deadline`` (``first_token_timeout_seconds``)."""
    block = first
    while not _has_first_token(block) and len(block) < FIRST_BLOCK_LIMIT:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("no content before the first-token limit")
        set_read_timeout(response, remaining)
        more = response.read1(65536)
        if not more:
            return block  # the body ended: the relay says how
        block += more
    return block


def _has_first_token(block: bytes) -> bool:
    events = block.replace(b"\r\n", b"\n").split(b"\n\n")[:-1]  # complete events only
    for event in events:
        for line in event.split(b"\n"):
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                return True
            try:
                chunk = orjson.loads(data)
            except ValueError:
                return True  # malformed: the relay's to judge
            if not isinstance(chunk, dict) or chunk.get("error") or chunk.get("usage"):
                return True
            for choice in chunk.get("choices") or ():
                delta = choice.get("delta") if isinstance(choice, dict) else None
                if not isinstance(choice, dict) or choice.get("finish_reason") or not isinstance(delta, dict):
                    return True
                if any(delta.get(key) for key in ("content", "tool_calls", "function_call", "reasoning_content",
                                                  "reasoning")):  # a reasoning model's thinking is output too
                    return True
    return False


def _close(response) -> None:
    if response is not None:
        close_upstream(response)


def _failed(breaker, target) -> None:
    if breaker is not None:
        breaker.failure(target)


def _succeeded(breaker, target) -> None:
    if breaker is not None:
        breaker.success(target)


def _upstream_message(payload: bytes, status: int) -> str:
    return error_code(payload)[1] or f"The upstream answered HTTP {status}."


def failure_response(failure: UpstreamFailure) -> Response:
    """Return the caller's answer for a failure before the first byte (OpenAI error shape)."""
    if failure.body is not None:
        try:
            data = json.loads(failure.body)
            if isinstance(data, dict) and isinstance(data.get("error"), dict):
                return Response(failure.body, status=failure.status, mimetype="application/json")
        except ValueError:
            pass
    raise PortalError(failure.message, status=failure.status, code=failure.code,
                      headers=failure.headers, type="upstream_error")
