"""Metering a call that is not a chat completion (an agent run, a search, a notebook answer)
the way chat calls are metered: admitted by ``portal_chat_admission`` with an estimate, and one
:class:`ChatRecord` when it ends, whatever the end, handed to ``portal_chat_completed``."""
from __future__ import annotations

import json
import time

from .counting import estimate_tokens
from .errors import PortalError
from .types import ChatEstimate, ChatRecord, ChatTarget


def usage_and_cost(usage: tuple | None, count, reported_cost, prices: tuple) -> tuple:
    """Return one answer's ``(prompt_tokens, completion_tokens, usage_source, cost, cost_source)``.

    Tokens are ``usage`` (input, output) when the upstream reported it (``upstream``), else
    ``count()``'s pair (``counted``). The cost is ``reported_cost`` when it came with the usage
    and is a number (``upstream``; a cost sent before a cut answer covers no usage), else the
    tokens at ``prices`` (input, output USD per token) when either is set (``config``), else
    ``(None, None)``: no price is known, the caller may have one of its own.
    """
    if usage is not None:
        prompt, completion, source = int(usage[0] or 0), int(usage[1] or 0), "upstream"
        try:
            return prompt, completion, source, float(reported_cost), "upstream"
        except (TypeError, ValueError):
            pass
    else:
        prompt, completion = count()
        source = "counted"
    if any(p is not None for p in prices):
        return prompt, completion, source, prompt * (prices[0] or 0.0) + completion * (prices[1] or 0.0), "config"
    return prompt, completion, source, None, None


class MeteredCall:
    """One call under way. ``backend`` is the plugin's backend object (its ``name`` goes on the
    record); ``prices`` are its (input, output) USD per token; ``prompt_text`` is what the call
    was given, counted when the backend reports no usage; ``price_per_call`` is USD the call costs
    whatever its tokens (a tool call), charged when the call ends answered (status 200)."""

    def __init__(self, portal, actor, *, model: str, backend, upstream_model: str, stream: bool,
                 request_id: str, prompt_text: str = "", session_id: str | None = None,
                 prices: tuple = (None, None), reserve_completion_tokens: int = 1024,
                 estimated_prompt_tokens: int | None = None, price_per_call: float | None = None):
        self.portal, self.actor = portal, actor
        self.backend = backend
        self.prompt_text = prompt_text
        self.estimated_prompt_tokens = estimated_prompt_tokens
        self.prices = prices
        self.price_per_call = price_per_call
        self.reserve_completion_tokens = reserve_completion_tokens
        self.started = time.monotonic()
        self.ended = False
        self.parts: list[tuple[str, float | None]] = []
        self.record = ChatRecord(request_id=request_id, actor_id=actor.id, actor_role=actor.role, model=model,
                                 backend=backend.name, upstream_model=upstream_model, stream=stream,
                                 key_id=actor.key_id, session_id=session_id, started_at=time.time())

    def target(self) -> ChatTarget:
        """Return the call's target as admission hooks see it (the model's only name is its own)."""
        model = self.record.model
        return ChatTarget(model=model, backend=self.backend, upstream_model=model,
                          input_cost_per_token=self.prices[0], output_cost_per_token=self.prices[1],
                          names=(model,), portal_name=True)

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        """Return the USD of these tokens at the call's prices (0 where none is set)."""
        return prompt_tokens * (self.prices[0] or 0.0) + completion_tokens * (self.prices[1] or 0.0)

    def add_part(self, text: str, price: float | None) -> None:
        """Bill ``text`` with this call when it ends: its tokens counted into the prompt, at
        ``price`` USD per token. For work another model did for the same call (an ask's query
        embedding), so the call is admitted once and is one row."""
        self.parts.append((text, price))

    def admit(self) -> None:
        """Ask every admission hook (limits, budgets) before the call starts; a refusal is
        recorded, then raised."""
        prompt = (self.estimated_prompt_tokens if self.estimated_prompt_tokens is not None
                  else estimate_tokens(self.prompt_text) + 3)
        completion = self.reserve_completion_tokens
        estimate = ChatEstimate(prompt_tokens=prompt, completion_tokens=completion,
                                cost=self.cost(prompt, completion) + (self.price_per_call or 0.0), record=self.record)
        self.record.reservation = estimate
        try:
            self.portal.hook.portal_chat_admission(portal=self.portal, actor=self.actor, model=self.record.model,
                                                   target=self.target(), estimate=estimate)
        except PortalError as refusal:
            self.end("refused", refusal.status, refusal.message)
            raise

    def readmit(self, prompt_tokens: int) -> None:
        """Say the call will use ``prompt_tokens`` in all (its text now known); past its
        estimate, admission hooks reserve the rest or refuse it. A refusal is recorded, then
        raised."""
        reservation = self.record.reservation
        extra = prompt_tokens - (reservation.prompt_tokens if reservation is not None else 0)
        if reservation is None or extra <= 0:
            return
        cost = self.cost(extra, 0)
        try:
            self.portal.hook.portal_chat_readmission(portal=self.portal, estimate=reservation,
                                                     prompt_tokens=extra, cost=cost)
        except PortalError as refusal:
            self.end("refused", refusal.status, refusal.message)
            raise
        reservation.prompt_tokens += extra
        reservation.cost += cost

    def handover(self) -> dict:
        """Return what another process needs to end this admitted call (:meth:`taken_over`):
        picklable, the reservation's holds included. A hold with a ``handed_over()`` method
        (a journal of this process's open calls) is told, and stays here."""
        reservation = self.record.reservation
        if reservation is not None:
            for hold in [h for h in reservation.holds if hasattr(h, "handed_over")]:
                hold.handed_over()
                reservation.holds.remove(hold)
        return {"record": self.record, "prices": self.prices, "price_per_call": self.price_per_call}

    @classmethod
    def taken_over(cls, portal, handover: dict, prompt_text: str = "") -> "MeteredCall":
        """Return the call of ``handover`` (made by :meth:`handover` where it was admitted), to
        be ended here: by the job worker that did the work, for instance."""
        call = cls.__new__(cls)
        call.portal, call.actor, call.backend = portal, None, None
        call.prompt_text, call.prices = prompt_text, tuple(handover["prices"])
        call.price_per_call = handover.get("price_per_call")
        call.reserve_completion_tokens, call.estimated_prompt_tokens = 0, None
        call.started = time.monotonic() - (time.time() - handover["record"].started_at)
        call.ended, call.record, call.parts = False, handover["record"], []
        return call

    def end(self, outcome: str, status: int, error=None, usage: tuple | None = None, answer_text: str = "",
            upstream_call_id: str | None = None, cost: float | None = None) -> None:
        """Close the record and hand it on (once; later calls do nothing). Tokens are ``usage``
        (input, output) when the backend reported it, else counted from the prompt and
        ``answer_text`` (``usage_source: counted``); the cost is the backend's ``cost`` when it
        reported one with its usage, else the tokens at the call's prices."""
        if self.ended:
            return
        self.ended = True
        record, counter, model = self.record, self.portal.token_counter, self.record.model

        def count():
            if outcome == "refused":
                return 0, 0
            return (counter.count_text(model, self.prompt_text) + 3 if self.prompt_text else 0,
                    counter.count_text(model, answer_text))

        record.prompt_tokens, record.completion_tokens, source, cost, record.cost_source = \
            usage_and_cost(usage, count, cost, self.prices)
        record.cost = cost or 0.0
        if outcome != "refused":
            record.usage_source = source
        if status == 200 and self.price_per_call is not None:  # paid for work done and answered
            record.cost += self.price_per_call
            record.cost_source = record.cost_source or "config"
        if outcome != "refused":
            for text, price in self.parts:
                tokens = counter.count_text(model, text) + 3
                record.prompt_tokens += tokens
                record.cost += tokens * (price or 0.0)
                record.cost_source = record.cost_source or ("config" if price is not None else None)
        record.upstream_call_id = record.upstream_call_id or upstream_call_id
        record.outcome, record.status = outcome, status
        record.error = error if error is None or isinstance(error, str) else json.dumps(error)
        record.partial = outcome != "ok"
        record.duration = time.monotonic() - self.started
        self.portal.dispatcher.submit(record)


def stream_status(outcome: str) -> int:
    """Return the status a relayed stream's record carries for how it ended."""
    if outcome == "ok":
        return 200
    return {"client_disconnected": 499, "portal_shutdown": 503}.get(outcome, 502)
