"""Usage from Langfuse's metrics API (v2), with the deprecated daily metrics as a fallback."""
from __future__ import annotations

import json
from datetime import datetime, timezone

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


def metrics_query(query) -> dict:
    """Return the v2 metrics query for a portal usage query (grouping by user is done by filter)."""
    dimensions = [{"field": "providedModelName"}] if "model" in query.group_by else []
    filters = []
    if query.user:
        filters.append({"column": "userId", "operator": "=", "value": query.user, "type": "string"})
    if query.model:
        filters.append({"column": "providedModelName", "operator": "=", "value": query.model, "type": "string"})
    body = {"view": "observations", "dimensions": dimensions, "metrics": _DEFAULT_METRICS, "filters": filters,
            "fromTimestamp": query.start.isoformat().replace("+00:00", "Z"),
            "toTimestamp": query.end.isoformat().replace("+00:00", "Z")}
    if "day" in query.group_by or "hour" in query.group_by:
        body["timeDimension"] = {"granularity": "day" if "day" in query.group_by else "hour"}
    return body


def _time_key(value: str, hourly: bool) -> str:
    moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:00:00Z" if hourly else "%Y-%m-%d")


def usage_from_langfuse(portal, query, settings: dict) -> list[dict]:
    """Return usage rows from Langfuse's metrics API, falling back to the daily metrics API."""
    if "user" in query.group_by and not query.user:
        raise ValueError("Langfuse can filter by user but not group by user; pass user=")
    if "backend" in query.group_by:
        raise ValueError("Langfuse does not know the portal's backends; group by model, day or hour")
    base = settings["base_url"].rstrip("/")
    auth = (settings["public_key"], settings["secret_key"])
    response = portal.http.get(base + "/api/public/v2/metrics", auth=auth, timeout=settings["timeout_seconds"],
                               params={"query": json.dumps(metrics_query(query))})
    if response.status_code == 404:
        return _usage_from_daily(portal, query, base, auth, settings["timeout_seconds"])
    response.raise_for_status()
    rows = []
    for item in response.json().get("data") or []:
        row = {}
        if "user" in query.group_by:
            row["user"] = query.user
        if "model" in query.group_by:
            row["model"] = item.get("providedModelName")
        if "day" in query.group_by or "hour" in query.group_by:
            row["hour" if "hour" in query.group_by else "day"] = _time_key(item.get("time_dimension"),
                                                                           "hour" in query.group_by)
        row = {**empty_row(row), "requests": _number(item.get("count_count"), int),
               "prompt_tokens": _number(item.get("sum_inputTokens"), int),
               "completion_tokens": _number(item.get("sum_outputTokens"), int),
               "cost": _number(item.get("sum_totalCost"))}
        rows.append(row)
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
