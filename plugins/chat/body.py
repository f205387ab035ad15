"""Checking a chat request's body, and choosing what of it may travel upstream.

Only OpenAI chat parameters go upstream. Keys that would steer the upstream itself (its URL,
its key, LiteLLM's own parameters, canned answers) are refused with 400; any other unknown key
is dropped. ``user`` and ``metadata`` are the portal's: it sets them itself (see the backends'
``attribute``).
"""
from __future__ import annotations


from flask import g, request

from agent_portal import PortalError
from agent_portal.request_body import parse_json
from agent_portal.routing import body_check

# OpenAI's chat completion parameters (November 2026) that the portal passes on as sent.
FORWARDED = frozenset({
    "model", "messages", "stream", "stream_options", "temperature", "top_p", "n", "stop",
    "max_tokens", "max_completion_tokens", "presence_penalty", "frequency_penalty", "logit_bias",
    "logprobs", "top_logprobs", "response_format", "seed", "tools", "tool_choice",
    "parallel_tool_calls", "functions", "function_call", "reasoning_effort", "modalities", "audio",
    "prediction", "service_tier", "web_search_options", "verbosity", "store",
})

# Keys that ask the gateway behind the portal to go elsewhere, use other credentials, or skip
# the model: a caller who sends them is refused, not silently served.
REFUSED = frozenset({
    "api_base", "base_url", "api_key", "api_version", "organization", "custom_llm_provider",
    "litellm_params", "litellm_metadata", "mock_response", "mock_tool_calls", "mock_timeout",
    "extra_headers", "headers", "extra_body", "proxy_server_request", "secret_fields",
    "aws_access_key_id", "aws_secret_access_key", "aws_session_token", "aws_region_name",
    "vertex_credentials", "vertex_project", "vertex_location", "azure_ad_token", "deployment_id",
    "timeout", "num_retries", "fallbacks", "context_window_fallbacks", "caching", "cache",
    "no-log", "guardrails", "input_cost_per_token", "output_cost_per_token", "tags",
})


_NUMBER_OR_NULL = {"type": ["number", "null"], "x-error-code": "invalid_type"}
_COUNT_OR_NULL = {"type": ["integer", "null"], "minimum": 1, "x-error-code": "invalid_type"}
MAX_COMPLETION_TOKENS = 10_000_000  # more than any model writes; a bigger ceiling is a hostile one

# The body of a chat call: the core checks every request against it before the view runs (and
# /openapi.json shows it); WebSocket messages are checked against it by check_chat_body.
CHAT_BODY_SCHEMA = {
    "type": "object", "x-error-code": "invalid_body",
    "required": ["model", "messages"],
    "properties": {
        "model": {"type": "string", "pattern": "\\S", "x-error-code": "missing_model",
                  "description": "A model of GET /v1/models"},
        "messages": {"type": "array", "minItems": 1, "x-error-code": "missing_messages",
                     "items": {"type": "object", "required": ["role"], "x-error-code": "invalid_messages",
                               "properties": {"role": {"type": "string", "x-error-code": "invalid_messages"},
                                              "content": {}}}},
        "stream": {"type": "boolean", "x-error-code": "invalid_type"},
        "stream_options": {"type": ["object", "null"], "x-error-code": "invalid_type"},
        "temperature": {**_NUMBER_OR_NULL, "minimum": 0, "maximum": 2},
        "top_p": {**_NUMBER_OR_NULL, "minimum": 0, "maximum": 1},
        "max_tokens": {**_COUNT_OR_NULL, "maximum": MAX_COMPLETION_TOKENS},
        "max_completion_tokens": {**_COUNT_OR_NULL, "maximum": MAX_COMPLETION_TOKENS},
        "n": {**_COUNT_OR_NULL, "maximum": 128},
    },
}
_check_schema = body_check(CHAT_BODY_SCHEMA)


def read_chat_body() -> dict:
    """Return the checked body of the current chat request, only forwarded keys kept. The core
    parsed it and checked it against :data:`CHAT_BODY_SCHEMA` before the view (``g.json_body``)."""
    body = g.get("json_body")
    if body is None:  # a route that did not declare the schema
        return check_chat_body(request.get_data(cache=False))
    return accepted(body)


def check_chat_body(raw) -> dict:
    """Return the checked chat body parsed from ``raw``, only forwarded keys kept.

    Raises a 400 :class:`PortalError` for bad JSON, a missing model or messages, wrong types,
    or a key that would steer the upstream (see ``REFUSED``).
    """
    body = parse_json(raw)
    _check_schema(body)
    return accepted(body)


def accepted(body: dict) -> dict:
    """Return the keys of a schema-checked ``body`` that go upstream; 400 for a steering key."""
    steering = sorted(REFUSED.intersection(body))
    if steering:
        raise PortalError(f"These parameters are not accepted by the portal: {', '.join(steering)}.",
                          code="parameter_not_allowed")
    return {key: value for key, value in body.items() if key in FORWARDED}


def message_text(messages: list) -> str:
    """Return the text of ``messages`` (string contents and the text parts of list contents)."""
    parts = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(p["text"] for p in content
                         if isinstance(p, dict) and isinstance(p.get("text"), str))
        for call in message.get("tool_calls") or ():
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict) and isinstance(function.get("arguments"), str):
                parts.append(function["arguments"])
    return "\n".join(parts)
