"""How one chat record becomes a Langfuse trace, through the SDK's own exporter and tracer provider."""
from __future__ import annotations

import contextvars
import logging
import threading
from datetime import datetime, timedelta, timezone

log = logging.getLogger("agent_portal.langfuse")


class CallTimedProvider:
    """A tracer provider whose tracers start a span at the chat call's own start time.

    The SDK starts a generation's span when it is created, which is when the record is written,
    after the call; every tracer this provider hands out (the SDK's included) takes its start time
    from ``started_ns`` instead, when set.
    """

    def __init__(self):
        from opentelemetry.sdk.trace import TracerProvider

        self.provider = TracerProvider()
        self.started_ns: contextvars.ContextVar = contextvars.ContextVar("call_started_ns", default=None)

    def get_tracer(self, *args, **kwargs):
        return _CallTimedTracer(self.provider.get_tracer(*args, **kwargs), self.started_ns)

    def __getattr__(self, name):
        return getattr(self.provider, name)


class _CallTimedTracer:
    def __init__(self, tracer, started_ns):
        self._tracer, self._started_ns = tracer, started_ns

    def _timed(self, kwargs: dict) -> dict:
        if kwargs.get("start_time") is None and self._started_ns.get() is not None:
            kwargs["start_time"] = self._started_ns.get()
        return kwargs

    def start_span(self, *args, **kwargs):
        return self._tracer.start_span(*args, **self._timed(kwargs))

    def start_as_current_span(self, *args, **kwargs):
        return self._tracer.start_as_current_span(*args, **self._timed(kwargs))

    def __getattr__(self, name):
        return getattr(self._tracer, name)


class LangfuseTracer:
    """The SDK client with a tracer provider of its own, and how one record becomes a trace."""

    def __init__(self, settings: dict):
        from langfuse import Langfuse

        self.settings = settings
        self.timing = CallTimedProvider()
        self.provider = self.timing.provider
        self.client = Langfuse(public_key=settings["public_key"], secret_key=settings["secret_key"],
                               base_url=settings["base_url"], timeout=settings["timeout_seconds"],
                               flush_interval=settings["flush_interval_seconds"], flush_at=settings["flush_at"],
                               environment=settings.get("environment"), tracer_provider=self.timing,
                               tracing_enabled=True)
        self.sent = 0

    def trace(self, record) -> None:
        """Record one chat call as a trace holding one generation that starts and ends when the
        call did (never raises into the portal). The model is the upstream's name, which
        Langfuse prices by; the public name is in the metadata and the tag ``model:<name>``. A
        cost is sent only when the portal knows it: any cost sent, 0 included, wins over
        Langfuse's own price."""
        from langfuse import propagate_attributes

        payloads = self.settings["log_payloads"]
        begun = datetime.fromtimestamp(record.started_at, timezone.utc)
        metadata = {"request_id": record.request_id, "call_id": record.call_id, "backend": record.backend,
                    "public_model": record.model, "outcome": record.outcome,
                    "usage_source": record.usage_source, "cost_source": record.cost_source,
                    "stream": record.stream, "partial": record.partial,
                    "ttft_ms": None if record.ttft is None else round(record.ttft * 1000, 3),
                    "duration_ms": round(record.duration * 1000, 3),
                    "upstream_call_id": record.upstream_call_id}
        tags = ["agent-portal", f"role:{record.actor_role}", f"outcome:{record.outcome}", f"model:{record.model}"]
        update = {"output": record.output if payloads else None,
                  "usage_details": {"input": record.prompt_tokens, "output": record.completion_tokens},
                  "level": "DEFAULT" if record.outcome == "ok" else "ERROR", "status_message": record.error}
        if record.cost_source is not None:
            update["cost_details"] = {"total": record.cost}
        token = self.timing.started_ns.set(int(record.started_at * 1e9))
        try:
            with propagate_attributes(user_id=record.actor_id, session_id=record.session_id, tags=tags,
                                      metadata={"request_id": record.request_id}, trace_name="chat"):
                with self.client.start_as_current_observation(
                        name="chat", as_type="generation", model=record.upstream_model or record.model,
                        input=record.messages if payloads else None, metadata=metadata,
                        completion_start_time=begun + timedelta(seconds=record.ttft) if record.ttft else None,
                        end_on_exit=False) as generation:
                    generation.update(**update)
                    end = begun + timedelta(seconds=record.duration)
                    generation.end(end_time=int(end.timestamp() * 1e9))
        finally:
            self.timing.started_ns.reset(token)
        self.sent += 1

    def shutdown(self, seconds: float) -> None:
        """Flush and stop the exporter, giving up after ``seconds``."""
        worker = threading.Thread(target=self.client.shutdown, daemon=True)
        worker.start()
        worker.join(seconds)
        if worker.is_alive():
            log.warning("langfuse: traces still queued after %ss at shutdown were dropped", seconds)
        self._forget_sdk_resources()

    def _forget_sdk_resources(self) -> None:
        # The SDK keeps one exporter per public key for the whole process and keeps it after
        # shutdown; a later app with the same key (tests build many) would get a stopped one.
        try:
            from langfuse._client.resource_manager import LangfuseResourceManager

            with LangfuseResourceManager._lock:
                LangfuseResourceManager._instances.pop(self.settings["public_key"], None)
        except (ImportError, AttributeError):
            pass


# --- reading usage back ----------------------------------------------------------------------
