"""Which models take a prefill: an answer so far, given as a last assistant message, for a
fallback to continue a stream another target broke off."""
from __future__ import annotations

from .models import target_key


class PrefillBook:
    """Which models take a prefill (an answer to continue): ``supports_prefill`` of an alias in
    ``chat.models`` when set, else what the backend says of the model (LiteLLM's model info), else
    learned: a model that refused one (400, 422) is skipped for continuations until restart."""

    def __init__(self, aliases: dict):
        self.aliases = aliases
        self.refusals: set[tuple] = set()

    def known(self, target) -> bool | None:
        """Return whether ``target`` takes a prefill: configured, said by its backend, or learned
        from a refusal; None when nothing is known yet (it is tried)."""
        configured = self.aliases.get(target.model, {}).get("supports_prefill")
        if configured is not None:
            return configured
        if target_key(target) in self.refusals:
            return False
        said = getattr(target.backend, "prefill_support", None)  # optional on a plugin's own backend
        return said(target.upstream_model) if said else None

    def takes(self, target) -> bool:
        return self.known(target) is not False

    def refused(self, target) -> None:
        self.refusals.add(target_key(target))
