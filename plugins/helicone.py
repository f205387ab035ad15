"""Helicone: chat optionally through its gateway, usage from its REST API, health.

Through the gateway every call carries ``Helicone-Auth``, ``Helicone-User-Id`` (the caller),
``Helicone-Request-Id`` (the portal's request id) and ``Helicone-Property-*`` from config.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timezone

from agent_portal import ChatTarget, HealthCheck, ModelInfo, UsageProvider, hookimpl
from agent_portal.upstream import OpenAIUpstream
from agent_portal.usage import CallFacts, aggregate, empty_row

NAME = "helicone"
PAGE = 1000
MAX_ROWS = 20_000


@hookimpl
def portal_config_schema():
    return {NAME: {
        "type": "object",
        "additionalProperties": False,
        "required": ["api_key"],
        "properties": {
            "api_key": {"type": "string", "minLength": 1},
            "api_url": {"type": "string", "pattern": "^https?://", "default": "https://api.helicone.ai"},
            "gateway_url": {"type": ["string", "null"], "pattern": "^https?://"},
            "gateway_auth": {"enum": ["helicone-auth", "bearer"], "default": "helicone-auth"},
            "upstream_api_key": {"type": ["string", "null"]},
            "models": {"type": "array", "items": {"type": "string"}},
            "properties": {"type": "object", "additionalProperties": {"type": "string"}, "default": {}},
            "timeout_seconds": {"type": "number", "exclusiveMinimum": 0, "default": 10},
            "required": {"type": "boolean", "default": False},
        },
    }}


def helicone_request_id(request_id: str) -> str:
    """Return the portal's request id as the UUID Helicone expects (it is one when 32 hex digits)."""
    try:
        return str(uuid.UUID(hex=request_id))
    except ValueError:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"agent-portal:{request_id}"))


class HeliconeGateway(OpenAIUpstream):
    """Helicone's OpenAI-compatible gateway as a chat backend."""

    kind = "helicone"

    def __init__(self, portal, settings: dict):
        headers = {f"Helicone-Property-{k}": v for k, v in settings["properties"].items()}
        api_key = None
        if settings["gateway_auth"] == "bearer":  # the AI gateway: Helicone key as the bearer
            api_key = settings["api_key"]
        else:  # the legacy proxy: Helicone-Auth beside the provider's own key
            headers["Helicone-Auth"] = f"Bearer {settings['api_key']}"
            api_key = settings.get("upstream_api_key")
        super().__init__(portal, NAME, settings["gateway_url"], api_key=api_key, headers=headers,
                         models=settings.get("models"))

    def request_headers(self, request_id, actor):
        headers = super().request_headers(request_id, actor)
        headers["Helicone-User-Id"] = actor.id
        headers["Helicone-Request-Id"] = helicone_request_id(request_id)
        return headers


# --- usage ---------------------------------------------------------------------------------------


def _post(portal, settings, path, body):
    response = portal.http.post(settings["api_url"].rstrip("/") + path, json=body,
                                headers={"authorization": f"Bearer {settings['api_key']}"},
                                timeout=settings["timeout_seconds"])
    response.raise_for_status()
    answer = response.json()
    if not isinstance(answer, dict) or answer.get("error"):
        raise ValueError(f"Helicone answered an error: {answer.get('error') if isinstance(answer, dict) else answer}")
    return answer.get("data")


def _when(value) -> datetime:
    moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _user_filter(user):
    return {"request_response_rmt": {"user_id": {"equals": user}}} if user else "all"


def usage_from_helicone(portal, query) -> list[dict]:
    """Return usage rows: per-user totals from user metrics, anything finer from request rows."""
    settings = portal.plugin_config(NAME)
    if set(query.group_by) <= {"user"} and not query.model:
        data = _post(portal, settings, "/v1/user/metrics/query", {
            "filter": _user_filter(query.user), "offset": 0, "limit": PAGE,
            "timeFilter": {"startTimeUnixSeconds": int(query.start.timestamp()),
                           "endTimeUnixSeconds": int(query.end.timestamp())}})
        users = (data or {}).get("users") or []
        if "user" in query.group_by:
            return [{**empty_row({"user": u.get("user_id")}), "requests": int(u.get("total_requests") or 0),
                     "prompt_tokens": int(u.get("total_prompt_tokens") or 0),
                     "completion_tokens": int(u.get("total_completion_tokens") or 0),
                     "cost": float(u.get("cost") or 0)} for u in users]
        total = {**empty_row({}), "requests": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost": 0.0}
        for u in users:
            total["requests"] += int(u.get("total_requests") or 0)
            total["prompt_tokens"] += int(u.get("total_prompt_tokens") or 0)
            total["completion_tokens"] += int(u.get("total_completion_tokens") or 0)
            total["cost"] += float(u.get("cost") or 0)
        return [total] if users else []
    if "backend" in query.group_by:
        raise ValueError("Helicone does not know the portal's backends")
    facts, offset = [], 0
    while offset < MAX_ROWS:
        rows = _post(portal, settings, "/v1/request/query", {
            "filter": _user_filter(query.user), "offset": offset, "limit": PAGE, "sort": {"created_at": "desc"}})
        rows = rows or []
        for row in rows:
            at = _when(row.get("request_created_at"))
            if not (query.start <= at < query.end) or (query.model and row.get("request_model") != query.model):
                continue
            status = int(row.get("response_status") or 0)
            facts.append(CallFacts(user=row.get("request_user_id") or "", model=row.get("request_model") or "",
                                   backend="helicone", started_at=at,
                                   prompt_tokens=int(row.get("prompt_tokens") or 0),
                                   completion_tokens=int(row.get("completion_tokens") or 0),
                                   cost=float(row.get("cost") or 0), ok=200 <= status < 400,
                                   latency_ms=float(row.get("delay_ms") or 0)))
        oldest = _when(rows[-1]["request_created_at"]) if rows else None
        if len(rows) < PAGE or (oldest is not None and oldest < query.start):
            break
        offset += PAGE
    return aggregate(facts, query)


# --- hooks ---------------------------------------------------------------------------------------


@hookimpl
def portal_startup(portal):
    settings = portal.plugin_config(NAME)
    portal.extensions[NAME] = HeliconeGateway(portal, settings) if settings.get("gateway_url") else None


@hookimpl
def portal_chat_backend(portal, model):
    gateway = portal.extensions[NAME]
    if gateway is not None and model in gateway.model_ids():
        return ChatTarget(model=model, backend=gateway, upstream_model=model)
    return None


@hookimpl
def portal_models(portal, actor):
    gateway = portal.extensions[NAME]
    return [ModelInfo(id=m, backend=NAME) for m in gateway.model_ids()] if gateway is not None else []


@hookimpl
def portal_usage_providers(portal):
    return [UsageProvider(NAME, usage_from_helicone)]


@hookimpl
def portal_health_checks(portal):
    settings = portal.plugin_config(NAME)

    def check(portal):
        response = portal.http.get(settings["api_url"].rstrip("/") + "/healthcheck", timeout=3)
        if response.status_code != 200:
            return {"status": "down", "detail": f"HTTP {response.status_code}"}
        status = (response.json() or {}).get("status", "")
        return {"status": "up" if str(status).startswith("healthy") else "degraded", "detail": status}

    return [HealthCheck(NAME, check, timeout=3.0, required=settings["required"])]
