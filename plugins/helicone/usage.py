"""Usage from Helicone's REST API: per-user metrics, or request rows aggregated here."""
from __future__ import annotations

from datetime import datetime, timezone

from agent_portal.usage import CallFacts, aggregate, empty_row

PAGE = 1000
MAX_ROWS = 10_000  # Helicone refuses offsets beyond 10,000: more rows than this is an error, never a cut answer


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


def request_filter(user: str | None, model: str | None):
    """Return the ``/v1/request/query-clickhouse`` filter: the user and the model when given,
    joined with ``and``."""
    parts = [{"request_response_rmt": {field: {"equals": value}}}
             for field, value in (("user_id", user), ("model", model)) if value]
    if not parts:
        return "all"
    node = parts[0]
    for part in parts[1:]:
        node = {"left": node, "operator": "and", "right": part}
    return node


def usage_from_helicone(portal, query, settings: dict) -> list[dict]:
    """Return usage rows: per-user totals from user metrics, anything finer from request rows."""
    ledger_only = query.needs_ledger()
    if ledger_only:
        raise ValueError(f"Helicone does not record the portal's {ledger_only}; "
                         f"filter or group by {ledger_only} with source=ledger")
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
    facts, offset = [], 0
    while True:
        rows = _post(portal, settings, "/v1/request/query-clickhouse", {
            "filter": request_filter(query.user, query.model), "offset": offset, "limit": PAGE,
            "sort": {"created_at": "desc"}}) or []
        for row in rows:
            at = _when(row.get("request_created_at"))
            if not (query.start <= at < query.end):
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
        if offset >= MAX_ROWS:
            raise ValueError(f"Helicone holds more than {MAX_ROWS} requests in this range; narrow it "
                             "(a shorter range, a user or a model) rather than read a cut answer")
    return aggregate(facts, query)
