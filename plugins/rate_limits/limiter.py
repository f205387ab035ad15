"""Which limits apply to a call, reserving against them at admission, and settling at the end.

Requests per minute are counted with the ``limits`` library. Tokens per minute and budgets are
reserved: at admission the call's estimate (prompt plus its completion ceiling, and their cost)
is added to a shared counter, but only while that counter is under its limit, in one atomic
step; when the call ends the reservation is replaced by what the call really used. So ten
concurrent calls cannot all slip under one budget: once the reservations reach it, the next is
refused. A call whose own estimate would take a counter more than ``overshoot`` (a fraction of
the limit) past it is refused up front, so from estimates no counter ends past
``limit × (1 + overshoot)``; beyond that only what a call uses past its own estimate.
"""
from __future__ import annotations

import logging
import threading
import time
import weakref
from datetime import datetime, timezone

from limits import RateLimitItemPerMinute
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter

from agent_portal import PortalError
from agent_portal.outages import Outage

from .counters import AT_LIMIT, PAST_CEILING, RESERVED, counters_for
from .holds import BUDGETS, Hold, LimitExceeded, period
from .runtime import merged

log = logging.getLogger("agent_portal.rate_limits")
class Limiter:
    """The app's limits: which apply to whom, the shared counters, and the budget figures."""

    def __init__(self, portal, settings: dict, spend_of, key_spend_of, runtime):
        self.portal = portal
        self.settings = settings
        self.spend_of = spend_of  # (user, since) -> USD stored in the ledger
        self.key_spend_of = key_spend_of  # (key id, since) -> USD stored in the ledger
        self.runtime = runtime  # the limits an admin set at runtime (RuntimeLimits)
        self._table: tuple = (None, {})  # (the runtime rows it was made from, the merged table)
        url = settings.get("storage") or portal.settings.get("redis_url") or "memory://"
        self.storage_url = url
        self.storage = storage_from_string(url)
        self.window = FixedWindowRateLimiter(self.storage)
        self.counters = counters_for(url)
        self.fail_open = settings["on_storage_error"] == "open"
        self.overshoot = settings["overshoot"]
        self.storage_errors = 0
        self.outage = Outage(log, "rate limit store")
        self._lock = threading.Lock()
        # counter key -> this worker's holds on it not yet settled (weakly: an upload's holds are
        # settled by the job worker they were handed to, and go when the request is over)
        self.live: dict[str, weakref.WeakSet] = {}
        self.blind: set[str] = set()  # counter keys a call was admitted on while the store was away

    # --- which limits apply --------------------------------------------------------------
    def table(self) -> dict:
        """Return ``{scope: {id: limits}}``: the config's ``rate_limits`` with what an admin set
        at runtime over it (:func:`runtime.merged`), made again only when the rows change."""
        rows = self.runtime.rows()
        made_from, table = self._table
        if made_from is not rows:
            table = merged(self.settings, rows)
            self._table = (rows, table)
        return table

    def limits_for(self, actor, names: tuple = ()) -> list[tuple[str, tuple, dict]]:
        """Return ``[(scope, identifiers, limits)]`` that apply to ``actor`` calling a model
        reached by any of ``names`` (a limit set on an alias holds for its upstream name too).
        A group's limits hold for each member on their own, as a role's do."""
        table = self.table()
        user_limits = {**(table["roles"].get(actor.role) or {}), **(table["users"].get(actor.id) or {})}
        scopes = [("user", ("user", actor.id), user_limits)]
        if table["groups"]:
            for group in self.portal.actor_groups(actor):
                if group in table["groups"]:
                    scopes.append(("group", ("group", group, actor.id), table["groups"][group]))
        if actor.key_id and actor.key_id in table["keys"]:
            scopes.append(("key", ("key", actor.key_id), table["keys"][actor.key_id]))
        for name in names:
            if name in table["models"]:
                scopes.append(("model", ("user-model", actor.id, name), table["models"][name]))
        return [(s, ids, {k: v for k, v in lim.items() if v is not None}) for s, ids, lim in scopes]

    @staticmethod
    def check_models(scopes, names: tuple) -> None:
        """Raise 403 ``model_forbidden`` when a scope's ``models`` names none of ``names``."""
        for scope, ids, lim in scopes:
            allowed = lim.get("models")
            if allowed is not None and names and not set(names) & set(allowed):
                who = scope if scope == "user" else f"{scope} {ids[1]}"
                raise PortalError(f"The {who} limits allow only these models: {', '.join(allowed) or 'none'}.",
                                  status=403, code="model_forbidden")

    # --- the store -------------------------------------------------------------------------
    def _guarded(self, default, method, *args, **kwargs):
        """Return ``method(*args)`` on the limit store, or ``default`` (fail-open) or a 503
        (fail-closed) when the store cannot answer."""
        try:
            result = method(*args, **kwargs)
        except PortalError:
            raise
        except Exception as exc:
            self.storage_errors += 1
            self.portal.hook.portal_metric(portal=self.portal, name="upstream_errors", value=1,
                                           labels={"kind": "limit_storage"})
            self.outage.failed(exc)
            if self.fail_open:
                return default
            raise PortalError("The rate limit store cannot be reached; calls are refused until it returns.",
                              status=503, code="limit_store_unavailable") from exc
        self._answered()
        return result

    def _answered(self) -> None:
        """The store answered: an outage, if there was one, is over (and so are its blind calls)."""
        if self.outage.since is not None:
            self.outage.answered()
            self.blind.clear()

    @property
    def storage_kind(self) -> str:
        return "redis" if self.storage_url.startswith(("redis://", "rediss://")) else "memory"

    # --- admission ---------------------------------------------------------------------------
    def admit(self, actor, names: tuple, estimate) -> list[Hold]:
        """Reserve the call's estimate against every tokens and budget limit, then count the
        request; returns the holds to settle. Raises :class:`LimitExceeded` (429,
        ``Retry-After``) with nothing left reserved when a limit is reached."""
        scopes = self.limits_for(actor, names)
        self.check_models(scopes, names)
        holds: list[Hold] = []
        try:
            self._reserve_tokens(scopes, estimate, holds)
            self._reserve_budgets(actor, scopes, estimate, holds)
            for scope, ids, lim in scopes:
                if "requests_per_minute" in lim:
                    item = RateLimitItemPerMinute(lim["requests_per_minute"])
                    if not self._guarded(True, self.window.hit, item, "requests", *ids):
                        self._refuse_requests(scope, item, ("requests", *ids))
        except PortalError:
            self.release(holds)
            raise
        return holds

    def _reserve_tokens(self, scopes, estimate, holds) -> None:
        tokens = (estimate.prompt_tokens + estimate.completion_tokens) if estimate else 1
        minute = int(time.time() // 60)
        for scope, ids, lim in scopes:
            if "tokens_per_minute" not in lim:
                continue
            key = "tokens:" + ":".join(ids) + f":{minute}"
            limit = lim["tokens_per_minute"]
            reserved = self._reserve(key, tokens, limit, 120, lambda key=key: self._live_amount(key))
            if reserved is None:
                continue  # admitted without the store: nothing was reserved, nothing to settle
            status, generation = reserved
            wait = {"Retry-After": str(60 - int(time.time()) % 60 + 1)}
            if status == AT_LIMIT:
                raise LimitExceeded(f"The {scope} limit tokens_per_minute ({limit} per minute) is reached.",
                                    code="tokens_per_minute", headers=wait)
            if status == PAST_CEILING:
                raise LimitExceeded(f"This call may use {tokens} tokens (its prompt and its completion ceiling, "
                                    f"max_tokens), which would take the {scope} limit tokens_per_minute ({limit} "
                                    f"per minute) more than {self.overshoot:.0%} past; ask for fewer tokens.",
                                    code="tokens_per_minute", headers=wait)
            holds.append(self._held(Hold("tokens", key, tokens, generation, limit * (1 + self.overshoot))))

    def _reserve_budgets(self, actor, scopes, estimate, holds) -> None:
        cost = estimate.cost if estimate else 0.0
        now = datetime.now(timezone.utc)
        wanted: dict[str, tuple] = {}
        for scope, _ids, lim in scopes:
            # a key's budget counts that key's calls; every other budget is its person's
            spender = ("key", actor.key_id) if scope == "key" else ("user", actor.id)
            for budget in BUDGETS:
                if budget in lim:
                    label, start, reset = period(budget, now)
                    key = budget_key(budget, spender, label)
                    if key not in wanted or lim[budget] < wanted[key][0]:
                        wanted[key] = (lim[budget], scope, budget, start, reset, spender)
        for key, (limit, scope, budget, start, reset, spender) in wanted.items():
            reserved = self._reserve(key, cost, limit, reset + 3600,
                                     lambda key=key, start=start, spender=spender:
                                     self._stored_spend(spender, start) + self._live_amount(key))
            if reserved is None:
                continue  # admitted without the store: nothing was reserved, nothing to settle
            status, generation = reserved
            name = f"{scope} {budget.replace('_', ' ')} of ${limit:.2f}"
            if status == AT_LIMIT:
                spent = self._guarded(None, self.counters.get, key) or 0.0
                raise LimitExceeded(f"The {name} is spent (${spent:.6f} including calls under way).",
                                    code=budget, headers={"Retry-After": str(reset)})
            if status == PAST_CEILING:
                raise LimitExceeded(f"This call may cost ${cost:.6f} (its prompt and its completion ceiling), "
                                    f"which would take the {name} more than {self.overshoot:.0%} past.",
                                    code=budget, headers={"Retry-After": str(reset)})
            holds.append(self._held(Hold("spend", key, cost, generation, limit * (1 + self.overshoot))))

    def _stored_spend(self, spender: tuple, since: datetime) -> float:
        kind, ident = spender
        return self.key_spend_of(ident, since) if kind == "key" else self.spend_of(ident, since)

    def _reserve(self, key, amount, limit, ttl, seed) -> tuple[int, str] | None:
        """Return (status, the counter's generation) of reserving ``amount``, or None when the
        store (or the ledger a new counter starts from) could not answer and
        ``on_storage_error`` is ``open`` (a 503 when ``closed``). While it cannot, this worker
        admits one call per counter (a user's budget, tokens a minute), no more: a 503 after."""
        ceiling = limit * (1 + self.overshoot)
        reserved = self._guarded(None, self.counters.reserve, key, amount, limit, ttl, seed, ceiling)
        if reserved is None:
            with self._lock:
                if key in self.blind:
                    raise PortalError("The rate limit store cannot be reached; while it is away one call per "
                                      "limit is let through.", status=503, code="limit_store_unavailable",
                                      headers={"Retry-After": "5"})
                self.blind.add(key)
            return None
        self._adopt(key, reserved[2])
        return reserved[0], reserved[2]

    def _held(self, hold: Hold) -> Hold:
        with self._lock:
            self.live.setdefault(hold.key, weakref.WeakSet()).add(hold)
        return hold

    def _live_amount(self, key: str) -> float:
        """Return what this worker's calls under way hold on ``key``: a counter rebuilt now
        (Redis restarted empty) starts from the ledger plus these."""
        with self._lock:
            return sum(h.amount for h in list(self.live.get(key, ())) if not h.settled)

    def _adopt(self, key: str, generation: str) -> None:
        """Make this worker's holds on ``key`` settle against ``generation``: a counter rebuilt
        from the ledger plus them (:meth:`_live_amount`)."""
        with self._lock:
            for hold in list(self.live.get(key, ())):
                hold.generation = generation

    def _refuse_requests(self, scope, item, ids):
        stats = self._guarded(None, self.window.get_window_stats, item, *ids)
        wait = max(1, int((stats.reset_time if stats else time.time() + 60) - time.time()) + 1)
        raise LimitExceeded(f"The {scope} limit requests_per_minute ({item.amount} per minute) is reached.",
                            code="requests_per_minute", headers={"Retry-After": str(wait)})

    def extend(self, holds: list[Hold], tokens: int, cost: float) -> None:
        """Add ``tokens`` and ``cost`` to a call's holds (it found it will use more than its
        estimate). Raises :class:`LimitExceeded` when that takes a counter past its ceiling;
        a counter that was rebuilt since (or a store that cannot answer) is left as it is."""
        for hold in holds:
            amount = tokens if hold.counter == "tokens" else cost
            if amount <= 0 or hold.settled:
                continue
            status = self._guarded(None, self.counters.extend, hold.key, amount, hold.ceiling, hold.generation)
            if status == PAST_CEILING:
                name = "tokens_per_minute" if hold.counter == "tokens" else hold.key.split(":")[1]
                what = f"{tokens} tokens" if hold.counter == "tokens" else f"${cost:.6f}"
                raise LimitExceeded(f"The work needs {what} more than was reserved, which would take "
                                    f"{name} more than {self.overshoot:.0%} past its limit.", code=name)
            if status == RESERVED:
                hold.amount += amount

    # --- settling -----------------------------------------------------------------------------
    def release(self, holds: list[Hold]) -> None:
        """Give back every hold (a call refused or never made)."""
        for hold in holds:
            self._settle_one(hold, 0.0)

    def settle(self, holds: list[Hold], record) -> None:
        """Replace each hold by what the call of ``record`` really used (off the request path)."""
        for hold in holds:
            used = (record.prompt_tokens + record.completion_tokens) if hold.counter == "tokens" else record.cost
            self._settle_one(hold, float(used))

    def _settle_one(self, hold: Hold, used: float) -> None:
        if hold.settled:
            return
        hold.settled = True
        with self._lock:
            holds = self.live.get(hold.key)
            if holds is not None:
                holds.discard(hold)
                if not holds:
                    del self.live[hold.key]
        try:
            self.counters.adjust(hold.key, used - hold.amount, hold.generation)
        except Exception as exc:  # off the request path: counted and told once per interval, never raised
            self.storage_errors += 1
            self.outage.failed(exc)

    # --- what is left -----------------------------------------------------------------------
    def spend(self, user: str, budget: str, key_id: str | None = None) -> float:
        """Return ``user``'s spend (or, given ``key_id``, that key's) this UTC day or month:
        the shared counter (calls under way included) when it exists, else the ledger's
        figure. 503 when neither can answer."""
        label, start, _reset = period(budget, datetime.now(timezone.utc))
        spender = ("key", key_id) if key_id else ("user", user)
        value = self._guarded(None, self.counters.get, budget_key(budget, spender, label))
        if value is not None:
            return value
        try:
            return self._stored_spend(spender, start)
        except Exception as exc:
            away = self.outage.state()
            store = f"the limit store ({away['reason']})" if away else "the limit store"
            raise PortalError(f"Neither {store} nor the ledger can say what was spent ({type(exc).__name__}); "
                              "try again shortly.", status=503, code="limit_store_unavailable",
                              headers={"Retry-After": "5"}) from None

    def health(self) -> dict:
        """Return the limits' health: the store answering (a ping when nothing asked it
        lately), or degraded since when, why, and what the mode lets through meanwhile."""
        if self.storage_kind == "memory":
            return {"status": "up", "mode": self.settings["on_storage_error"], "detail": "in this process"}
        try:  # a ping, counted like any call's failure (never a 503 here, whatever the mode)
            self.counters.get("health:ping")
        except Exception as exc:
            self.outage.failed(exc)
        else:
            self._answered()
        away = self.outage.state()
        mode = self.settings["on_storage_error"]
        if away is None:
            return {"status": "up", "mode": mode, "detail": f"redis answering; {mode} if it goes away"}
        lets = ("one call per user and limit per worker is let through, requests a minute are not counted"
                if mode == "open" else "calls with limits are refused (503)")
        return {"status": "degraded", "mode": mode, "since": away["since"], "reason": away["reason"],
                "detail": f"the limit store is unavailable {self.outage.describe()}; {mode} mode: {lets}"}

    def status(self, actor) -> list[dict]:
        """Return each limit that applies to ``actor`` with what is left and when it resets."""
        out = []
        minute = int(time.time() // 60)
        for scope, ids, lim in self.limits_for(actor):
            for name, value in lim.items():
                entry = {"scope": scope, "limit": name, "value": value}
                if scope in ("group", "key"):
                    entry["id"] = ids[1]
                if name == "models":
                    pass
                elif name == "requests_per_minute":
                    item = RateLimitItemPerMinute(value)
                    stats = self._guarded(None, self.window.get_window_stats, item, "requests", *ids)
                    entry["remaining"] = stats.remaining if stats else None
                    entry["resets_at"] = stats.reset_time if stats else None
                elif name == "tokens_per_minute":
                    used = self._guarded(None, self.counters.get, "tokens:" + ":".join(ids) + f":{minute}")
                    entry["remaining"] = max(0, int(value - (used or 0)))
                    entry["resets_at"] = (minute + 1) * 60
                else:
                    spent = self.spend(actor.id, name, actor.key_id if scope == "key" else None)
                    entry["spent_usd"] = round(spent, 6)
                    entry["remaining"] = round(max(0.0, value - spent), 6)
                out.append(entry)
        return out


def budget_key(budget: str, spender: tuple, label: str) -> str:
    """Return the counter of ``budget`` for ``spender`` (``("user", id)`` or ``("key", id)``) in
    the period ``label``; a person's keeps the name it always had."""
    kind, ident = spender
    return f"spend:{budget}:key:{ident}:{label}" if kind == "key" else f"spend:{budget}:{ident}:{label}"
