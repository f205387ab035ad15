"""Which models take a prefill: an answer so far, given as a last assistant message, for a
fallback to continue a stream another target broke off."""
from __future__ import annotations

from .models import target_key


class PrefillBook:
    """Which models take a prefill (an answer to continue): ``supports_prefill`` of an alias in
    ``chat.models`` when set, else learned: a model that refused one (400, 422) is skipped for
    continuations until the portal restarts."""

    def __init__(self, aliases: dict):
        self.aliases = aliases
        self.refusals: set[tuple] = set()

    def takes(self, target) -> bool:
        configured = self.aliases.get(target.model, {}).get("supports_prefill")
        return configured if configured is not None else target_key(target) not in self.refusals

    def refused(self, target) -> None:
        self.refusals.add(target_key(target))

    def learned(self, key: tuple) -> bool | None:
        """Return False when ``key`` (backend, upstream model) refused a prefill, else None."""
        return False if key in self.refusals else None
