"""Reaching an upstream: retries before the first byte, fallbacks, and failures mapped to answers."""
from __future__ import annotations

import json
import time

from flask import Response
from urllib3.exceptions import ConnectTimeoutError, HTTPError, NewConnectionError, ReadTimeoutError

from agent_portal import PortalError
from agent_portal.sse import close_upstream
from agent_portal.upstream import UpstreamFailure

RETRYABLE = {429, 500, 502, 503, 504}


def _retry_after(response, cap: float, attempt: int) -> float:
    value = response.headers.get("Retry-After") if response is not None else None
    try:
        wait = float(value) if value is not None else 0.1 * (2 ** attempt)
    except ValueError:
        wait = 0.1 * (2 ** attempt)
    return max(0.0, min(wait, cap))


def open_upstream(settings, targets: list, build_payload, stream: bool, request_id: str, actor,
                  session_id: str | None = None):
    """Send the call to the first target that answers, with retries before the first byte.

    Returns ``(response, target, first_block, ttft_mark)``; ``first_block`` is the first bytes
    of a stream (b"" when not streaming). Raises :class:`UpstreamFailure` when all fail; an
    upstream 4xx (other than 429) is final and raised at once with its body.
    """
    last = UpstreamFailure(502, "No upstream could be reached.", "upstream_unreachable")
    timeout = settings.stream_timeout if stream else settings.plain_timeout
    for target in targets:
        body = json.dumps(build_payload(target)).encode()
        headers = target.backend.request_headers(request_id, actor, session_id)
        for attempt in range(settings.retries + 1):
            response = None
            try:
                response = target.backend.send_chat(body, headers, timeout, stream)
                if response.status in RETRYABLE:
                    payload = response.data
                    last = UpstreamFailure(429 if response.status == 429 else 502,
                                           _upstream_message(payload, response.status),
                                           "upstream_rate_limited" if response.status == 429 else "upstream_error",
                                           headers={"Retry-After": response.headers["Retry-After"]}
                                           if "Retry-After" in response.headers else None)
                    wait = _retry_after(response, settings.retry_max_wait, attempt)
                    close_upstream(response)
                    if attempt < settings.retries:
                        time.sleep(wait)
                    continue
                if response.status in (401, 403):
                    payload = response.data
                    close_upstream(response)
                    # the caller's credentials are fine; the portal's own upstream key is not
                    raise UpstreamFailure(502, "The upstream refused the portal's credentials: "
                                          + _upstream_message(payload, response.status), "upstream_auth_failed")
                if response.status >= 400:
                    payload = response.data
                    close_upstream(response)
                    raise UpstreamFailure(response.status, _upstream_message(payload, response.status),
                                          "upstream_client_error", body=payload)
                if not stream:
                    return response, target, b"", time.monotonic()
                first = response.read1(65536)
                if not first:
                    close_upstream(response)
                    last = UpstreamFailure(502, "The upstream closed the stream before any data.",
                                           "upstream_empty")
                    continue
                return response, target, first, time.monotonic()
            except UpstreamFailure:
                raise
            except NewConnectionError as exc:  # a subclass of ConnectTimeoutError: refused is not slow
                last = UpstreamFailure(502, f"The upstream refused the connection ({exc.__class__.__name__}).",
                                       "upstream_unreachable")
            except (ReadTimeoutError, ConnectTimeoutError, TimeoutError) as exc:
                last = UpstreamFailure(504, f"The upstream did not answer in time ({exc.__class__.__name__}).",
                                       "upstream_timeout")
            except (HTTPError, OSError) as exc:
                last = UpstreamFailure(502, f"The upstream refused or reset the connection ({exc.__class__.__name__}).",
                                       "upstream_unreachable")
            if response is not None:
                close_upstream(response)
            if attempt < settings.retries:
                time.sleep(_retry_after(None, settings.retry_max_wait, attempt))
    raise last


def _upstream_message(payload: bytes, status: int) -> str:
    try:
        data = json.loads(payload)
        error = data.get("error", data.get("detail"))
        if isinstance(error, dict):
            return str(error.get("message") or error)
        if error:
            return str(error)
    except (ValueError, AttributeError, TypeError):
        pass
    return f"The upstream answered HTTP {status}."


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
