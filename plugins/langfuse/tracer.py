"""How one chat record becomes a Langfuse trace, through the SDK's own exporter and tracer provider."""
from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta, timezone

log = logging.getLogger("agent_portal.langfuse")


class LangfuseTracer:
    """The SDK client with a tracer provider of its own, and how one record becomes a trace."""

    def __init__(self, settings: dict):
        from langfuse import Langfuse
        from opentelemetry.sdk.trace import TracerProvider

        self.settings = settings
        self.provider = TracerProvider()
        self.client = Langfuse(public_key=settings["public_key"], secret_key=settings["secret_key"],
                               base_url=settings["base_url"], timeout=settings["timeout_seconds"],
                               flush_interval=settings["flush_interval_seconds"], flush_at=settings["flush_at"],
                               environment=settings.get("environment"), tracer_provider=self.provider,
                               tracing_enabled=True)
        self.sent = 0

    def trace(self, record) -> None:
        """Record one chat call as a trace holding one generation (never raises into the portal)."""
        from langfuse import propagate_attributes

        payloads = self.settings["log_payloads"]
        begun = datetime.now(timezone.utc)
        metadata = {"request_id": record.request_id, "call_id": record.call_id, "backend": record.backend,
                    "outcome": record.outcome, "usage_source": record.usage_source,
                    "stream": record.stream, "partial": record.partial,
                    "ttft_ms": None if record.ttft is None else round(record.ttft * 1000, 3),
                    "duration_ms": round(record.duration * 1000, 3),
                    "upstream_call_id": record.upstream_call_id}
        tags = ["agent-portal", f"role:{record.actor_role}", f"outcome:{record.outcome}"]
        with propagate_attributes(user_id=record.actor_id, session_id=record.session_id, tags=tags,
                                  metadata={"request_id": record.request_id}, trace_name="chat"):
            with self.client.start_as_current_observation(
                    name="chat", as_type="generation", model=record.upstream_model or record.model,
                    input=record.messages if payloads else None, metadata=metadata,
                    completion_start_time=begun + timedelta(seconds=record.ttft) if record.ttft else None,
                    end_on_exit=False) as generation:
                generation.update(
                    output=record.output if payloads else None,
                    usage_details={"input": record.prompt_tokens, "output": record.completion_tokens},
                    cost_details={"total": record.cost},
                    level="DEFAULT" if record.outcome == "ok" else "ERROR",
                    status_message=record.error)
                # the SDK starts the span now: keep the call's real duration
                end = begun + timedelta(seconds=record.duration)
                generation.end(end_time=int(end.timestamp() * 1e9))
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
