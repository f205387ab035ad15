"""One chat call: admission with an estimate, the upstream, the relay, and the record it leaves.

Every call leaves exactly one record. When the upstream's usage never arrives (the client or
the upstream cut the stream, or a plain answer has no usage), the tokens are counted from the
prompt and from the text actually relayed, the cost computed from those, and the record says
``usage_source: counted``.
"""
from __future__ import annotations

import json
import time

from agent_portal import ChatEstimate, ChatRecord, PortalError
from agent_portal.sse import NoContinuation, StreamState, relay

from .body import MAX_COMPLETION_TOKENS, message_text
from agent_portal.counting import estimate_tokens
from agent_portal.metering import stream_status, usage_and_cost
from .breaker import Breaker
from .models import ModelRules, resolve, target_key as _key
from .prefills import PrefillBook
from .settings import NAME, ChatSettings
from .upstream import UpstreamFailure, open_upstream


class PriceBook:
    """Per upstream model, the blended USD per token the upstream itself last charged, for
    pricing counted calls and estimates when the config sets no price."""

    def __init__(self):
        self.rates: dict[tuple, float] = {}

    def learn(self, key: tuple, cost: float, tokens: int) -> None:
        if cost > 0 and tokens > 0:
            self.rates[key] = cost / tokens

    def rate(self, key: tuple) -> float | None:
        """Return the last blended rate seen for ``key`` (None when never seen)."""
        return self.rates.get(key)


class ChatState:
    """What the chat plugin keeps per app."""

    def __init__(self, settings: ChatSettings, wants_payloads: bool = False, redis_url: str | None = None,
                 groups_of=None):
        self.settings = settings
        self.breaker = Breaker(settings.breaker_failures, settings.breaker_cooloff, redis_url)
        self.capture = settings.capture or wants_payloads
        self.rules = ModelRules(settings.models, settings.expose_upstream_models, groups_of)
        self.prices = PriceBook()
        self.prefills = PrefillBook(settings.models)


def price(state: ChatState, target, prompt_tokens: int, completion_tokens: int, upstream_cost) -> tuple:
    """Return the call's (cost, where it came from): the upstream's when it sent one, else the
    config's prices, else the upstream's last seen rate for that model, else (0, None)."""
    *_tokens, cost, source = usage_and_cost((prompt_tokens, completion_tokens), None, upstream_cost, _prices(target))
    return _known_price(state, target, prompt_tokens + completion_tokens, cost, source)


def _prices(target) -> tuple:
    return target.input_cost_per_token, target.output_cost_per_token


def _known_price(state: ChatState, target, tokens: int, cost, source) -> tuple:
    """Return (cost, source) of :func:`usage_and_cost`'s answer: an upstream's cost is learned
    as the model's rate; with no price known, the rate last learned prices the tokens."""
    if source == "upstream":
        state.prices.learn(_key(target), cost, tokens)
    if source is not None:
        return cost, source
    rate = state.prices.rate(_key(target))
    return (rate * tokens, "learned") if rate else (0.0, None)


def estimate(state: ChatState, target, body: dict) -> ChatEstimate:
    """Return what the call may use: the prompt estimated from its text (no tokenizer on the
    request path), the completion at its ceiling (``max_completion_tokens``, ``max_tokens`` or
    ``reserve_completion_tokens``, times ``n``), and the cost of both at the call's price."""
    messages = body["messages"]
    prompt = estimate_tokens(message_text(messages)) + 3 * len(messages) + 3
    ceiling = body.get("max_completion_tokens") or body.get("max_tokens") or \
        state.settings.reserve_completion_tokens
    completion = min(max(1, int(ceiling)), MAX_COMPLETION_TOKENS) * min(max(1, int(body.get("n") or 1)), 128)
    return ChatEstimate(prompt_tokens=prompt, completion_tokens=completion,
                        cost=price(state, target, prompt, completion, None)[0])


class ChatCall:
    """One chat call under way: its record, the upstream answer and how it was reached."""

    def __init__(self, portal, actor, body: dict, stream: bool, session_id: str | None, request_id: str):
        self.portal = portal
        self.state: ChatState = portal.extensions[NAME]
        self.settings = self.state.settings
        self.started = time.monotonic()
        self.body, self.stream, self.actor, self.request_id = body, stream, actor, request_id
        self.client_wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        self.capture = self.state.capture
        self.record = ChatRecord(request_id=request_id, actor_id=actor.id, actor_role=actor.role,
                                 model=body["model"], stream=stream, key_id=actor.key_id,
                                 session_id=session_id, started_at=time.time(),
                                 messages=body["messages"] if self.capture else None)
        self.target = self.response = None
        self.targets: list = []
        self.first_block, self.first_at, self.header_cost = b"", None, None
        self.served: list[dict] = []  # the parts of an answer that more than one target served
        self.skipped: list[dict] = []  # fallbacks this caller may not use
        self.part_start = 0  # where in the relayed text the current target's part begins
        self.deadline = self.started + self.settings.call_budget

    def fallbacks(self, target) -> list:
        """Return the fallback targets of ``target`` this caller may use; one they may not (or
        one not served) is skipped, and the record's ``served_by`` says so."""
        usable = []
        for model in target.fallbacks:
            try:
                usable.append(resolve(self.portal, self.state.rules, self.actor, model))
            except PortalError as refusal:
                self.skipped.append({"model": model, "skipped": refusal.code, "reason": refusal.message})
        return usable

    def build_payload(self, target, prefill: str | None = None) -> dict:
        payload = dict(self.body)
        payload["model"] = target.upstream_model
        if prefill:  # the answer so far, for a fallback to continue
            payload["messages"] = [*self.body["messages"], {"role": "assistant", "content": prefill}]
        if self.stream:
            payload["stream"] = True
            payload["stream_options"] = {**(self.body.get("stream_options") or {}), "include_usage": True}
        target.backend.attribute(payload, self.actor, self.request_id, self.record.session_id)
        return payload

    def open(self) -> None:
        """Admit the call and reach an upstream; raises (after recording the call) when refused
        or when every upstream failed before the first byte."""
        try:
            target = resolve(self.portal, self.state.rules, self.actor, self.body["model"])
        except PortalError as refusal:  # an unknown or forbidden model is a refused call, recorded
            self.refuse(refusal)
            raise
        self.target = target
        self.record.reservation = call_estimate = estimate(self.state, target, self.body)
        call_estimate.record = self.record
        try:
            self.portal.hook.portal_chat_admission(portal=self.portal, actor=self.actor,
                                                   model=self.body["model"], target=target,
                                                   estimate=call_estimate)
        except PortalError as refusal:
            self.refuse(refusal)
            raise
        # a call that fails before any upstream answers is still the primary target's
        self.record.backend, self.record.upstream_model = target.backend.name, target.upstream_model
        self.targets = targets = [target] + self.fallbacks(target)
        try:
            self.response, self.target, self.first_block, self.first_at = open_upstream(
                self.settings, targets, self.build_payload, self.stream, self.request_id, self.actor,
                self.record.session_id, self.state.breaker, self.deadline)
        except UpstreamFailure as failure:
            self.record.outcome, self.record.status = failure.code, failure.status
            self.record.error = failure.message
            self.finish()
            raise
        self.record.backend = self.target.backend.name
        self.record.upstream_model = self.target.upstream_model
        self.record.upstream_call_id = self.target.backend.upstream_call_id(self.request_id, self.response)
        self.header_cost = self.target.backend.reported_cost(self.response)
        self.record.ttft = self.first_at - self.started

    def part_usage(self, usage: dict | None, output_text: str, upstream_cost, prefill: str = "") -> dict:
        """Return one target's part of the answer: its tokens (its usage when it came, else
        counted from its prompt and ``output_text``, what it actually relayed) and cost."""
        target = self.target

        def count():
            counter, model = self.portal.token_counter, target.upstream_model
            messages = self.body["messages"] + ([{"role": "assistant", "content": prefill}] if prefill else [])
            return counter.count_prompt(model, messages, message_text(messages)), counter.count_text(model, output_text)

        reported = (usage.get("prompt_tokens"), usage.get("completion_tokens")) if usage else None
        prompt, completion, source, cost, cost_source = usage_and_cost(reported, count, upstream_cost, _prices(target))
        cost, cost_source = _known_price(self.state, target, prompt + completion, cost, cost_source)
        return {"backend": target.backend.name, "model": target.upstream_model, "prompt_tokens": prompt,
                "completion_tokens": completion, "cost": cost, "usage_source": source, "cost_source": cost_source}

    def settle_usage(self, usage: dict | None, output_text: str, upstream_cost, prefill: str = "") -> None:
        """Put tokens and cost on the record: the sum of every target's part."""
        record = self.record
        last = self.part_usage(usage, output_text, upstream_cost, prefill)
        parts = [*self.served, last]
        record.prompt_tokens = sum(p["prompt_tokens"] for p in parts)
        record.completion_tokens = sum(p["completion_tokens"] for p in parts)
        record.cost = sum(p["cost"] for p in parts)
        record.usage_source = "upstream" if all(p["usage_source"] == "upstream" for p in parts) else "counted"
        sources = {p["cost_source"] for p in parts}
        record.cost_source = None if None in sources else sources.pop() if len(sources) == 1 else "mixed"
        if self.served:
            record.served_by = parts

    def resume(self, stream_state: StreamState):
        """Continue a stream cut, stalled or malformed mid-answer on the next target: the
        original messages and the answer so far as an assistant message (a prefill). Returns
        ``(response, first_block)``, or a sentence saying why no target could, or None when
        continuing is off for this model or there is no other target."""
        alias = self.settings.models.get(self.body["model"], {})
        if not alias.get("continue_on_failure", self.settings.continue_on_failure):
            return None
        index = next((i for i, t in enumerate(self.targets) if t is self.target), len(self.targets))
        remaining = self.targets[index + 1:]
        if not remaining:
            return None
        self.state.breaker.failure(self.target)
        prefills = self.state.prefills
        able = [t for t in remaining if prefills.takes(t)]
        if not able:
            return NoContinuation("No fallback can continue the answer: none takes a prefill ("
                                  + ", ".join(t.model for t in remaining) + ").", "continuation_unavailable")
        text = "".join(stream_state.text)
        self.served.append({**self.part_usage(None, text[self.part_start:], None,
                                              text[:self.part_start]), "outcome": stream_state.outcome})
        refusals = []

        def refused(target):
            refusals.append(target.model)
            prefills.refused(target)

        try:
            response, target, first, _ = open_upstream(
                self.settings, able, lambda t: self.build_payload(t, prefill=text), True, self.request_id,
                self.actor, self.record.session_id, self.state.breaker, max(self.deadline, time.monotonic() + 5),
                refused=refused)
        except UpstreamFailure as failure:
            self.served.pop()  # the answer stays this target's alone: counted once, at the end
            if refusals:
                return NoContinuation(f"No fallback could continue the answer: {', '.join(refusals)} refused to "
                                      f"continue an answer (prefill): {failure.message}", "continuation_refused")
            return f"No fallback could continue the answer: {failure.message}"
        self.target, self.part_start = target, len(text)
        self.record.backend, self.record.upstream_model = target.backend.name, target.upstream_model
        return response, first

    def refuse(self, refusal: PortalError) -> None:
        """Record the call as refused by ``refusal`` (nothing was sent upstream)."""
        self.record.outcome, self.record.status = "refused", refusal.status
        self.record.error = refusal.message
        self.finish()

    def finish(self) -> None:
        """Close the record's timing and hand it to ``portal_chat_completed`` (off the request path)."""
        if self.skipped:
            self.record.served_by = (self.record.served_by or []) + self.skipped
        self.record.duration = time.monotonic() - self.started
        self.portal.dispatcher.submit(self.record)

    def relay(self):
        """Return the generator of the client's SSE bytes; the record is sent when it ends."""
        state = StreamState(strip_usage=not self.client_wants_usage)
        record = self.record

        def on_end(state: StreamState):
            cost = state.cost if state.cost is not None else self.header_cost
            text = "".join(state.text)
            self.settle_usage(state.usage, text[self.part_start:], cost, text[:self.part_start])
            record.skipped_chunks = state.skipped
            record.partial = state.outcome != "ok"
            record.outcome = state.outcome
            if state.outcome != "ok":
                record.status = stream_status(state.outcome)
            error = state.error
            record.error = error if error is None or isinstance(error, str) else json.dumps(error)
            record.upstream_call_id = record.upstream_call_id or state.call_id
            record.output = text if self.capture else None
            self.finish()

        return relay(self.response, self.first_block, state, self.settings.heartbeat,
                     self.stall_limit, on_end, self.portal.live_streams, resume=self.resume)

    def stall_limit(self) -> float:
        """Return how long the stream may be silent now: ``between_chunks_timeout_seconds``, or
        less while the call budget runs and a fallback could continue, half of what the budget
        leaves (the other half is the fallback's to finish in)."""
        between = self.settings.between_chunks
        left = self.deadline - time.monotonic()
        if left <= 0 or self.targets[-1:] == [self.target]:
            return between
        return max(1.0, min(between, left / 2))

    def plain_answer(self) -> tuple[bytes, dict]:
        """Read a non-streamed answer; returns its bytes and the headers to pass on."""
        record, response = self.record, self.response
        payload = response.data
        try:
            data = json.loads(payload)
            choices = [c for c in data.get("choices") or [] if isinstance(c, dict)]
            text = "".join((c.get("message") or {}).get("content") or "" for c in choices)
            cost = self.header_cost if self.header_cost is not None else (data.get("usage") or {}).get("cost")
            self.settle_usage(data.get("usage"), text, cost)
            record.upstream_call_id = record.upstream_call_id or data.get("id")
            if record.messages is not None:
                record.output = text
        except (ValueError, AttributeError, TypeError):
            record.outcome, record.status, record.partial = "upstream_malformed", 502, True
            record.error = "the upstream answered with something other than a JSON object"
            self.finish()
            raise PortalError("The upstream answered with something other than JSON.", status=502,
                              code="upstream_malformed", type="upstream_error")
        self.finish()
        return payload, self.target.backend.passed_headers(response)
