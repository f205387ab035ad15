"""The one usage query every usage provider answers, and the one answer shape.

A row: the group keys asked for (``user``, ``model``, ``backend``, ``key``, ``kind``, ``day``,
``hour``) plus
``requests``, ``prompt_tokens``, ``completion_tokens``, ``cost``, ``errors``,
``p50_latency_ms`` and ``p95_latency_ms`` (None where a provider cannot know them).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Iterable, Optional

from .errors import PortalError

GROUPS = ("user", "model", "backend", "key", "kind", "day", "hour")
# what a call was: a chat with a model, or one of the portal's other doors (see kind_of)
KINDS = ("chat", "embedding", "agent", "search", "documents", "notebook", "tool")
_KIND_OF_PREFIX = {"agent:": "agent", "search:": "search", "docs:": "documents", "documents:": "documents",
                   "notebook:": "notebook", "tool:": "tool"}
MAX_RANGE = timedelta(days=400)
METRICS = ("requests", "prompt_tokens", "completion_tokens", "cost", "errors",
           "p50_latency_ms", "p95_latency_ms")


@dataclass(frozen=True)
class UsageQuery:
    """A time range ``[start, end)``, the grouping, and optional user, model, backend, key (an
    API key's id) and kind filters (a provider that cannot filter by one refuses a query that
    asks it to)."""

    start: datetime
    end: datetime
    group_by: tuple = ()
    user: Optional[str] = None
    model: Optional[str] = None
    backend: Optional[str] = None
    key: Optional[str] = None
    kind: Optional[str] = None

    def needs_ledger(self) -> Optional[str]:
        """Return what of this query only the portal's ledger knows (the backend, an API key,
        a kind), or None when any usage source can answer it."""
        for name in ("backend", "key", "kind"):
            if getattr(self, name) or name in self.group_by:
                return name
        return None


def kind_of(model: str, backend: str) -> str:
    """Return the kind of a call to ``model`` through ``backend``: ``agent``, ``search``,
    ``documents``, ``notebook`` and ``tool`` by the model's prefix, ``embedding`` for the
    documents backend's other calls (an upload's chunks, a query, ``/v1/embeddings``), else ``chat``."""
    for prefix, kind in _KIND_OF_PREFIX.items():
        if model.startswith(prefix):
            return kind
    return "embedding" if backend == "documents" else "chat"


@dataclass
class CallFacts:
    """What aggregation needs of one call."""

    user: str
    model: str
    backend: str
    started_at: datetime
    prompt_tokens: int
    completion_tokens: int
    cost: float
    ok: bool
    latency_ms: float
    key: Optional[str] = None


def parse_time(text: str, name: str) -> datetime:
    """Return the aware UTC datetime of an ISO 8601 date or time; 400 when it is not one."""
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)
    except (ValueError, AttributeError, OverflowError) as exc:
        raise PortalError(f"'{name}' must be an ISO 8601 date or time between the years 1 and 9999, "
                          "such as 2026-11-01 or 2026-11-01T12:00:00Z.", code="invalid_time") from exc


def parse_query(args, now: datetime | None = None) -> UsageQuery:
    """Return the :class:`UsageQuery` of request args ``from``, ``to``, ``group_by``, ``user``,
    ``model``, ``backend``.

    Defaults to the last 7 days; raises a 400 :class:`PortalError` for a bad date, an empty or
    too long range, or an unknown grouping.
    """
    now = now or datetime.now(timezone.utc)
    end = parse_time(args["to"], "to") if args.get("to") else now
    try:
        start = parse_time(args["from"], "from") if args.get("from") else end - timedelta(days=7)
    except OverflowError as exc:
        raise PortalError("'to' is too early for the default 7-day range; give 'from' too.",
                          code="invalid_range") from exc
    if start >= end:
        raise PortalError("'from' must be before 'to'.", code="invalid_range")
    if end - start > MAX_RANGE:
        raise PortalError(f"The range may span at most {MAX_RANGE.days} days.", code="range_too_long")
    groups = tuple(g for g in (args.get("group_by") or "").split(",") if g)
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        raise PortalError(f"Unknown group_by {', '.join(unknown)}; use {', '.join(GROUPS)}.",
                          code="invalid_group_by")
    if "day" in groups and "hour" in groups:
        raise PortalError("Group by day or by hour, not both.", code="invalid_group_by")
    kind = args.get("kind") or None
    if kind is not None and kind not in KINDS:
        raise PortalError(f"Unknown kind {kind}; use {', '.join(KINDS)}.", code="invalid_kind")
    return UsageQuery(start, end, groups, args.get("user") or None, args.get("model") or None,
                      args.get("backend") or None, args.get("key") or None, kind)


def percentile(sorted_values: list, fraction: float):
    """Return the nearest-rank percentile of ascending ``sorted_values`` (None when empty)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


def group_key(facts: CallFacts, groups: tuple) -> tuple:
    key = []
    for group in groups:
        if group == "user":
            key.append(facts.user)
        elif group == "model":
            key.append(facts.model)
        elif group == "backend":
            key.append(facts.backend)
        elif group == "key":
            key.append(facts.key)
        elif group == "kind":
            key.append(kind_of(facts.model, facts.backend))
        elif group == "day":
            key.append(facts.started_at.astimezone(timezone.utc).strftime("%Y-%m-%d"))
        else:
            key.append(facts.started_at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:00:00Z"))
    return tuple(key)


def aggregate(calls: Iterable[CallFacts], query: UsageQuery) -> list[dict]:
    """Return the usage rows of ``calls`` grouped as ``query`` asks, sorted by group keys."""
    buckets: dict[tuple, dict] = {}
    for facts in calls:
        key = group_key(facts, query.group_by)
        bucket = buckets.get(key)
        if bucket is None:
            bucket = buckets[key] = {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0,
                                     "cost": 0.0, "errors": 0, "latencies": []}
        bucket["requests"] += 1
        bucket["prompt_tokens"] += facts.prompt_tokens
        bucket["completion_tokens"] += facts.completion_tokens
        bucket["cost"] += facts.cost
        bucket["errors"] += 0 if facts.ok else 1
        bucket["latencies"].append(facts.latency_ms)
    rows = []
    for key in sorted(buckets, key=lambda k: tuple(str(v) for v in k)):
        bucket = buckets[key]
        latencies = sorted(bucket.pop("latencies"))
        row = dict(zip(query.group_by, key))
        row.update(bucket)
        row["cost"] = round(row["cost"], 10)
        row["p50_latency_ms"] = _round(percentile(latencies, 0.50))
        row["p95_latency_ms"] = _round(percentile(latencies, 0.95))
        rows.append(row)
    return rows


def _round(value):
    return None if value is None else round(value, 3)


def empty_row(group_values: dict) -> dict:
    """Return a usage row with every metric unknown, for providers that fill only some."""
    return {**group_values, **{m: None for m in METRICS}}


__all__ = ["UsageQuery", "CallFacts", "GROUPS", "KINDS", "METRICS", "kind_of", "parse_query", "aggregate",
           "percentile", "parse_time", "empty_row"]
