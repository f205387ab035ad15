"""Usage from Langfuse's metrics API (v2), with the deprecated daily metrics as a fallback."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from agent_portal.usage import empty_row


_DEFAULT_METRICS = [{"measure": "totalCost", "aggregation": "sum"},
                    {"measure": "inputTokens", "aggregation": "sum"},
                    {"measure": "outputTokens", "aggregation": "sum"},
                    {"measure": "count", "aggregation": "count"}]


def _number(value, kind=float):
    try:
        return kind(float(value)) if value is not None else 0
    except (TypeError, ValueError):
        return 0


ROW_LIMIT = 1000  # the most one v2 metrics query returns (it returns 100 unless told)
SMALLEST_SPLIT = timedelta(hours=1)


def metrics_query(query, start: datetime, end: datetime) -> dict:
    """Return the v2 metrics query for a portal usage query over [start, end).

    The model Langfuse groups by is the upstream's name (what it prices by); a ``model`` filter
    is the portal's public name, matched by the trace tag ``model:<name>`` the portal sets.
    Grouping by user (without a user filter) needs a descending order on a measure and no time
    dimension: Langfuse refuses it otherwise.
    """
    dimensions = [{"field": "providedModelName"}] if "model" in query.group_by else []
    grouping_users = "user" in query.group_by and not query.user
    if grouping_users:
        dimensions.insert(0, {"field": "userId"})
    filters = []
    if query.user:
        filters.append({"column": "userId", "operator": "=", "value": query.user, "type": "string"})
    if query.model:
        filters.append({"column": "tags", "operator": "any of", "value": [f"model:{query.model}"],
                        "type": "arrayOptions"})
    body = {"view": "observations", "dimensions": dimensions, "metrics": _DEFAULT_METRICS, "filters": filters,
            "fromTimestamp": start.isoformat().replace("+00:00", "Z"),
            "toTimestamp": end.isoformat().replace("+00:00", "Z"), "config": {"row_limit": ROW_LIMIT}}
    if "day" in query.group_by or "hour" in query.group_by:
        body["timeDimension"] = {"granularity": "day" if "day" in query.group_by else "hour"}
    if grouping_users:
        body["orderBy"] = [{"field": "sum_totalCost", "direction": "desc"}]
    return body


def _time_key(value: str, hourly: bool) -> str:
    moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:00:00Z" if hourly else "%Y-%m-%d")


def _fetch(portal, query, settings, start: datetime, end: datetime) -> list | None:
    """Return the v2 rows for [start, end), splitting the range while an answer fills the row
    limit (it may have been cut); None when the server has no v2 metrics API (404)."""
    base = settings["base_url"].rstrip("/")
    response = portal.http.get(base + "/api/public/v2/metrics", auth=(settings["public_key"], settings["secret_key"]),
                               timeout=settings["timeout_seconds"],
                               params={"query": json.dumps(metrics_query(query, start, end))})
    if response.status_code == 404:
        return None
    response.raise_for_status()
    rows = response.json().get("data") or []
    if len(rows) < ROW_LIMIT:
        return rows
    if end - start <= SMALLEST_SPLIT:
        raise ValueError(f"Langfuse holds more than {ROW_LIMIT} rows for one hour of this query; "
                         "narrow it (a user or a model) rather than read a cut answer")
    middle = start + (end - start) / 2
    middle = middle.replace(minute=0, second=0, microsecond=0)  # on an hour: buckets stay whole
    if middle <= start:
        middle = start + SMALLEST_SPLIT
    return _fetch(portal, query, settings, start, middle) + _fetch(portal, query, settings, middle, end)


def usage_from_langfuse(portal, query, settings: dict) -> list[dict]:
    """Return usage rows from Langfuse's metrics API (never a cut answer), falling back to the
    daily metrics API on servers without it."""
    ledger_only = query.needs_ledger()
    if ledger_only:
        raise ValueError(f"Langfuse does not record the portal's {ledger_only}; "
                         f"filter or group by {ledger_only} with source=ledger")
    if "user" in query.group_by and not query.user and ("day" in query.group_by or "hour" in query.group_by):
        raise ValueError("Langfuse groups by user only without a time dimension; "
                         "pass user= to see one user by day or hour")
    found = _fetch(portal, query, settings, query.start, query.end)
    if found is None:
        base = settings["base_url"].rstrip("/")
        return _usage_from_daily(portal, query, base, (settings["public_key"], settings["secret_key"]),
                                 settings["timeout_seconds"])
    buckets: dict[tuple, dict] = {}
    hourly = "hour" in query.group_by
    for item in found:
        key = {}
        if "user" in query.group_by:
            key["user"] = query.user or item.get("userId")
        if "model" in query.group_by:
            key["model"] = item.get("providedModelName")
        if "day" in query.group_by or hourly:
            key["hour" if hourly else "day"] = _time_key(item.get("time_dimension"), hourly)
        # one bucket may come in two parts when the range was split inside it
        row = buckets.setdefault(tuple(key.items()), {**empty_row(key), "requests": 0, "prompt_tokens": 0,
                                                      "completion_tokens": 0, "cost": 0.0})
        row["requests"] += _number(item.get("count_count"), int)
        row["prompt_tokens"] += _number(item.get("sum_inputTokens"), int)
        row["completion_tokens"] += _number(item.get("sum_outputTokens"), int)
        row["cost"] += _number(item.get("sum_totalCost"))
    rows = list(buckets.values())
    if "user" in query.group_by and not query.user:
        rows.sort(key=lambda r: -r["cost"])
    return rows


def _usage_from_daily(portal, query, base, auth, timeout) -> list[dict]:
    if "hour" in query.group_by:
        raise ValueError("Langfuse's daily metrics cannot group by hour")
    params = {"fromTimestamp": query.start.isoformat().replace("+00:00", "Z"),
              "toTimestamp": query.end.isoformat().replace("+00:00", "Z"), "limit": 100, "page": 1}
    if query.user:
        params["userId"] = query.user
    buckets: dict[tuple, dict] = {}
    while True:
        response = portal.http.get(base + "/api/public/metrics/daily", auth=auth, timeout=timeout, params=params)
        response.raise_for_status()
        body = response.json()
        for day in body.get("data") or []:
            for usage in day.get("usage") or []:
                if query.model and usage.get("model") != query.model:
                    continue
                key = {}
                if "user" in query.group_by:
                    key["user"] = query.user
                if "model" in query.group_by:
                    key["model"] = usage.get("model")
                if "day" in query.group_by:
                    key["day"] = str(day.get("date"))[:10]
                bucket = buckets.setdefault(tuple(key.items()), {**empty_row(key), "requests": 0,
                                                                  "prompt_tokens": 0, "completion_tokens": 0,
                                                                  "cost": 0.0})
                bucket["requests"] += _number(usage.get("countObservations"), int)
                bucket["prompt_tokens"] += _number(usage.get("inputUsage"), int)
                bucket["completion_tokens"] += _number(usage.get("outputUsage"), int)
                bucket["cost"] += _number(usage.get("totalCost"))
        meta = body.get("meta") or {}
        if params["page"] >= _number(meta.get("totalPages"), int) or params["page"] >= 50:
            break
        params["page"] += 1
    return [buckets[k] for k in sorted(buckets, key=lambda k: tuple(str(v) for _, v in k))]


# --- hooks -------------------------------------------------------------------------------------
