"""The small value types that hooks pass between the core and the plugins."""
from __future__ import annotations

import time
from dataclasses import dataclass, field, asdict
from typing import Any, Callable, Optional

ACCESS_LEVELS = ("public", "user", "admin")
ROLE_RANK = {"pending": 0, "user": 1, "admin": 2}
ACCESS_RANK = {"public": 0, "user": 1, "admin": 2}


@dataclass(frozen=True)
class Actor:
    """Who is calling: ``via`` says how they were authenticated (``webui-session``, ``api-key``...)."""

    id: str
    role: str
    via: str
    email: Optional[str] = None
    name: Optional[str] = None
    key_id: Optional[str] = None

    def may(self, access: str) -> bool:
        """Return True when this actor's role reaches ``access``."""
        return ROLE_RANK.get(self.role, -1) >= ACCESS_RANK[access]


@dataclass
class Route:
    """One route a plugin declares. ``access`` is required: public, user or admin."""

    path: str
    view: Callable
    methods: tuple = ("GET",)
    access: Optional[str] = None
    name: Optional[str] = None
    websocket: bool = False


@dataclass
class HealthCheck:
    """A named check; ``check(portal)`` returns a dict with at least ``status`` (up/degraded/down)."""

    name: str
    check: Callable
    timeout: float = 3.0
    required: bool = False


@dataclass
class UsageProvider:
    """A named usage source; ``query(portal, usage_query)`` returns a list of usage rows."""

    name: str
    query: Callable


@dataclass
class ModelInfo:
    """A model one backend serves."""

    id: str
    backend: str
    owned_by: str = "agent-portal"


@dataclass
class ChatTarget:
    """Where one public model name goes: the backend, its upstream name, fallbacks and prices."""

    model: str
    backend: Any
    upstream_model: str
    fallbacks: tuple = ()
    input_cost_per_token: Optional[float] = None
    output_cost_per_token: Optional[float] = None


@dataclass
class Embed:
    """An admin UI the portal can frame under ``/embed/<name>/``; ``headers`` are the upstream
    credentials the portal adds (the caller's own are never forwarded)."""

    name: str
    title: str
    url: str
    headers: dict = field(default_factory=dict)
    timeout: float = 30.0


@dataclass
class ChatRecord:
    """One chat call, whatever its outcome. Times are seconds; cost is USD."""

    request_id: str
    actor_id: str
    actor_role: str
    model: str
    backend: str = ""
    upstream_model: str = ""
    stream: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    ttft: Optional[float] = None
    duration: float = 0.0
    outcome: str = "ok"
    status: int = 200
    error: Optional[str] = None
    partial: bool = False
    upstream_call_id: Optional[str] = None
    key_id: Optional[str] = None
    session_id: Optional[str] = None
    started_at: float = field(default_factory=time.time)
    messages: Any = None
    output: Optional[str] = None

    def to_dict(self) -> dict:
        """Return the record as plain JSON-able data (without the payloads)."""
        data = asdict(self)
        data.pop("messages", None)
        data.pop("output", None)
        return data
