"""A LiteLLM proxy as an OpenAI-compatible upstream that also tells LiteLLM who is calling."""
from __future__ import annotations

from agent_portal.upstream import OpenAIUpstream


class LiteLLMUpstream(OpenAIUpstream):
    """A LiteLLM proxy: also fills ``metadata`` so LiteLLM's own callbacks see the caller."""

    kind = "litellm"

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
