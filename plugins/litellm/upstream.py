"""A LiteLLM proxy as an OpenAI-compatible upstream that also tells LiteLLM who is calling."""
from __future__ import annotations

import logging
import time

from agent_portal.upstream import OpenAIUpstream

log = logging.getLogger("agent_portal.litellm")


class LiteLLMUpstream(OpenAIUpstream):
    """A LiteLLM proxy: also fills ``metadata`` so LiteLLM's own callbacks see the caller, and
    reads which models take a prefill from its ``/model/info``."""

    kind = "litellm"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.model_info_url = self.base_url.removesuffix("/v1") + "/model/info"
        self._prefill: dict[str, bool] | None = None
        self._info_loaded_at = 0.0

    def refresh(self) -> list[str]:
        ids = super().refresh()
        self.load_model_info()
        return ids

    def load_model_info(self) -> None:
        """Read ``supports_assistant_prefill`` of every model LiteLLM serves (its cost map's or the
        ``model_info`` of its config); keeps what it knew when LiteLLM does not answer."""
        self._info_loaded_at = time.monotonic()
        try:
            response = self.portal.http.get(self.model_info_url, headers=self.headers, timeout=self.timeout_seconds)
            response.raise_for_status()
            prefill = {}
            for entry in response.json().get("data") or []:
                info = entry.get("model_info") if isinstance(entry, dict) else None
                takes = info.get("supports_assistant_prefill") if isinstance(info, dict) else None
                name = entry.get("model_name") if isinstance(entry, dict) else None
                if isinstance(name, str) and isinstance(takes, bool):
                    # a model group with several deployments takes a prefill only if all of them do
                    prefill[name] = prefill.get(name, True) and takes
            self._prefill = prefill
        except Exception as exc:  # noqa: BLE001 - an optional source; the model list says if LiteLLM is down
            log.info("LiteLLM model info unavailable: %s", exc)

    def upstream_call_id(self, request_id: str, response) -> str | None:
        return response.headers.get("x-litellm-call-id")

    def passed_headers(self, response) -> dict:
        """LiteLLM's call id, so a caller can find the call in LiteLLM's own logs."""
        call_id = response.headers.get("x-litellm-call-id")
        return {"x-litellm-call-id": call_id} if call_id else {}

    def reported_cost(self, response) -> float | None:
        try:
            return float(response.headers["x-litellm-response-cost"])
        except (KeyError, TypeError, ValueError):
            return None

    def prefill_support(self, model: str) -> bool | None:
        if self._prefill is None or time.monotonic() - self._info_loaded_at > self.refresh_seconds:
            self.load_model_info()  # the first time, or a static model list that never refreshes
        return (self._prefill or {}).get(model)

    def attribute(self, payload, actor, request_id, session_id):
        super().attribute(payload, actor, request_id, session_id)
        metadata = payload.get("metadata")
        metadata = dict(metadata) if isinstance(metadata, dict) else {}
        metadata["trace_user_id"] = actor.id
        metadata["portal_request_id"] = request_id
        if session_id:
            metadata["session_id"] = session_id
        tags = metadata.get("tags") if isinstance(metadata.get("tags"), list) else []
        metadata["tags"] = [t for t in tags if isinstance(t, str)] + ["agent-portal", f"role:{actor.role}"]
        payload["metadata"] = metadata
