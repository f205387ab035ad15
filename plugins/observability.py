"""The observability API: usage per user and model, stack health, models per backend, live calls."""
from __future__ import annotations

import csv
import io
from dataclasses import replace
import json
import queue
import threading
import time

from flask import Response, g, request

from agent_portal import PortalError, Route, hookimpl
from agent_portal.config import strict_object
from agent_portal.hooks import call_each
from agent_portal.ws_auth import authenticate_websocket
from agent_portal.observe import collect_usage_providers, run_health, run_usage
from agent_portal.schemas import NULLABLE_STRING, NUMBER, STRING, array, obj
from agent_portal.usage import GROUPS, KINDS, METRICS, parse_query

NAME = "observability"


@hookimpl
def portal_config_schema():
    return {NAME: strict_object({
        "health_cache_seconds": {"type": "number", "minimum": 0, "default": 5},
        "required": {"type": "array", "items": {"type": "string"}, "default": []},
        "usage_timeout_seconds": {"type": "number", "exclusiveMinimum": 0, "default": 10},
        "events_queue": {"type": "integer", "minimum": 10, "default": 1000},
    })}


class EventHub:
    """Fans each completed call out to the live ``/ws/events`` subscribers (bounded, lossy)."""

    def __init__(self, size: int):
        self.size = size
        self.subscribers: set[queue.Queue] = set()
        self.lock = threading.Lock()

    def subscribe(self) -> queue.Queue:
        q: queue.Queue = queue.Queue(maxsize=self.size)
        with self.lock:
            self.subscribers.add(q)
        return q

    def unsubscribe(self, q: queue.Queue) -> None:
        with self.lock:
            self.subscribers.discard(q)

    def publish(self, event: dict) -> None:
        with self.lock:
            targets = list(self.subscribers)
        for q in targets:
            try:
                q.put_nowait(event)
            except queue.Full:  # a slow dashboard loses events, never slows the portal
                pass


class HealthCache:
    """The last health answer, reused for ``seconds`` so a polling dashboard cannot hammer upstreams."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.value = None
        self.at = 0.0
        self.lock = threading.Lock()

    def get(self, portal, required: set) -> dict:
        with self.lock:
            if self.value is not None and time.monotonic() - self.at < self.seconds:
                return self.value
            self.value = run_health(portal, required)
            self.at = time.monotonic()
            return self.value


@hookimpl
def portal_startup(portal):
    settings = portal.plugin_config(NAME)
    portal.extensions[NAME] = {"events": EventHub(settings["events_queue"]),
                               "health": HealthCache(settings["health_cache_seconds"])}


@hookimpl
def portal_chat_completed(portal, record):
    portal.extensions[NAME]["events"].publish({"type": "call", **record.to_dict()})


def _wants_csv() -> bool:
    if request.args.get("format") == "csv":
        return True
    if request.args.get("format") not in (None, "", "json"):
        raise PortalError("format must be json or csv.", code="invalid_format")
    return "text/csv" in (request.headers.get("Accept") or "")


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")
_LEADING_BLANKS = "".join(map(chr, range(33))) + "\x7f\u00a0\u3000\ufeff"


def csv_safe(value):
    """Return ``value`` so a spreadsheet shows it as text: a string starting like a formula
    (``= + - @``, tab, CR, LF), also after blanks or control characters a spreadsheet would
    skip (``\\r=``, `` =``, NUL), gets a leading apostrophe; numbers stay numbers."""
    if isinstance(value, str) and (value.startswith(_FORMULA_START)
                                   or value.lstrip(_LEADING_BLANKS).startswith(_FORMULA_START[:4])):
        return "'" + value
    return value


def _csv(rows: list[dict], groups: tuple) -> Response:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["source", *groups, *METRICS], extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: csv_safe(value) for key, value in row.items()})
    return Response(out.getvalue(), mimetype="text/csv",
                    headers={"Content-Disposition": "attachment; filename=usage.csv"})


def usage_view(portal):
    actor = g.actor
    query = parse_query(request.args)
    as_csv = _wants_csv()  # checked before any provider is asked
    if actor.role != "admin":
        if query.user and query.user != actor.id:
            raise PortalError("You may only see your own usage.", status=403, code="forbidden")
        query = replace(query, user=actor.id)
    providers = collect_usage_providers(portal)
    source = request.args.get("source") or "ledger"
    if source == "all":
        chosen = providers
    elif source in providers:
        chosen = {source: providers[source]}
    else:
        raise PortalError(f"Unknown source {source!r}; use all or one of {', '.join(sorted(providers))}.",
                          code="invalid_source")
    answers = run_usage(portal, chosen, query, portal.plugin_config(NAME)["usage_timeout_seconds"])
    meta = {"from": query.start.isoformat(), "to": query.end.isoformat(),
            "group_by": list(query.group_by), "user": query.user, "model": query.model, "backend": query.backend,
            "key": query.key, "kind": query.kind}
    if as_csv:
        rows = [{"source": name, **row} for name, answer in answers.items() if answer["ok"]
                for row in answer["data"]]
        return _csv(rows, query.group_by)
    if source != "all":
        answer = answers[source]
        if not answer["ok"]:
            raise PortalError(f"The usage source {source!r} failed: {answer['error']}", status=502,
                              code="source_failed")
        return {"query": meta, "source": source, "data": answer["data"]}
    return {"query": meta, "source": "all", "sources": answers}


USAGE_QUERY = {
    "from": {"type": "string", "description": "ISO 8601 time (default: 7 days before `to`)"},
    "to": {"type": "string", "description": "ISO 8601 time (default: now)"},
    "group_by": {"type": "string", "description": "comma-separated: " + ", ".join(GROUPS)},
    "user": {"type": "string", "description": "one user (admins; others see only their own)"},
    "model": {"type": "string"},
    "backend": {"type": "string", "description": "one backend (the ledger only)"},
    "key": {"type": "string", "description": "one API key's id (the ledger only)"},
    "kind": {"enum": list(KINDS), "description": "one kind of call (the ledger only)"},
    "source": {"type": "string", "description": "ledger (default), all, or another usage source"},
    "format": {"enum": ["json", "csv"]},
}
# /observability/health: the overall status and each component's (503 when down)
HEALTH = obj("status", "components", status={"enum": ["up", "degraded", "down"]}, checked_at=NUMBER,
             components={"type": "object", "additionalProperties": obj("status", status=STRING)})


@hookimpl
def portal_register_routes(portal):
    state = portal.extensions[NAME]
    required = set(portal.plugin_config(NAME)["required"])

    def usage():
        return usage_view(portal)

    def health():
        answer = state["health"].get(portal, required)
        return answer, (503 if answer["status"] == "down" else 200)

    def models():
        backends: dict = {}
        reachable = {}
        for answer in call_each(portal.hook.portal_models, portal=portal, actor=g.actor):
            if answer.error is not None:  # one plugin's failure shows as its own entry
                backends.setdefault(answer.plugin, [])
                reachable[answer.plugin] = {"reachable": False,
                                            "error": f"{type(answer.error).__name__}: {answer.error}"}
                continue
            for info in answer.value or []:
                backends.setdefault(info.backend, []).append(info.id)
        for answer in call_each(portal.hook.portal_backends, portal=portal):
            for backend in answer.value or []:
                reachable[backend.name] = {"reachable": backend.reachable, "error": backend.last_error}
        return {"backends": [{"backend": b, "models": sorted(set(m)), **reachable.get(b, {})}
                             for b, m in sorted(backends.items())]}

    def events(ws):
        if authenticate_websocket(portal, ws, "admin") is None:
            return
        hub = state["events"]
        q = hub.subscribe()
        try:
            ws.send(json.dumps({"type": "hello", "groups": list(GROUPS)}))
            while True:
                try:
                    event = q.get(timeout=20)
                except queue.Empty:
                    event = {"type": "ping", "at": time.time()}
                ws.send(json.dumps(event))
        finally:
            hub.unsubscribe(q)

    def calls():
        try:
            limit = min(max(int(request.args.get("limit", 50)), 1), 500)
        except ValueError as exc:
            raise PortalError("limit must be a whole number.", code="invalid_limit") from exc
        rows = portal.hook.portal_recent_calls(portal=portal, limit=limit)
        if rows is None:
            raise PortalError("No plugin keeps calls (enable the ledger).", status=404, code="no_ledger")
        if request.args.get("outcome") == "error":
            rows = [r for r in rows if r["outcome"] != "ok"]
        return {"data": rows}

    events.auth_in_first_message = True
    return [
        Route("/observability/calls", calls, access="admin", responses={"200": obj("data", data=array(obj()))},
              query={"limit": {"type": "integer", "minimum": 1, "maximum": 500, "description": "rows (50)"},
                     "outcome": {"enum": ["error"], "description": "only the failed calls"}}),
        Route("/observability/usage", usage, access="user", query=USAGE_QUERY, responses={"200": {"content": {
            "application/json": {"schema": obj("query", "source", query=obj(), source=STRING, data=array(obj()),
                                               sources=obj())},
            "text/csv": {"schema": STRING}}}}),
        Route("/observability/health", health, access="admin", responses={"200": HEALTH, "503": HEALTH}),
        Route("/observability/models", models, access="admin", responses={"200": obj("backends", backends=array(
            obj("backend", "models", backend=STRING, models=array(STRING), reachable={"type": ["boolean", "null"]},
                error=NULLABLE_STRING)))}),
        Route("/ws/events", events, access="admin", websocket=True),
    ]
