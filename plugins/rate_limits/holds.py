"""What an admission reserves on a counter (:class:`Hold`), the refusal a limit raises, and the
periods a budget counts in (UTC days and months)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from agent_portal import PortalError

BUDGETS = ("daily_budget_usd", "monthly_budget_usd")


class LimitExceeded(PortalError):
    status = 429
    type = "rate_limit_exceeded"


@dataclass(eq=False)  # each hold is itself (kept in sets, weakly)
class Hold:
    """What one admission reserved on one counter; settled once from the call's record."""

    counter: str  # "tokens" or "spend"
    key: str
    amount: float
    generation: str = ""  # the counter's, when the hold was made: it settles only against that one
    ceiling: float = 0.0  # how far the counter may go (the limit plus the overshoot)
    settled: bool = False


def _day_start(now: datetime) -> datetime:
    return datetime(now.year, now.month, now.day, tzinfo=timezone.utc)


def _month_start(now: datetime) -> datetime:
    return datetime(now.year, now.month, 1, tzinfo=timezone.utc)


def _next_month_start(now: datetime) -> datetime:
    return datetime(now.year + (now.month == 12), now.month % 12 + 1, 1, tzinfo=timezone.utc)


def period(budget: str, now: datetime) -> tuple[str, datetime, int]:
    """Return ``(label, start, seconds until the next period)`` of a daily or monthly budget."""
    if budget == "daily_budget_usd":
        start = _day_start(now)
        return start.strftime("%Y-%m-%d"), start, max(1, int(start.timestamp() + 86400 - now.timestamp()))
    start = _month_start(now)
    return start.strftime("%Y-%m"), start, max(1, int((_next_month_start(now) - now).total_seconds()))
