"""The small value types that hooks pass between the core and the plugins."""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

ACCESS_LEVELS = ("public", "user", "admin")
ROLES = ("user", "admin")  # the roles a portal credential may carry (Open WebUI adds "pending")
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
    # the JSON Schema of the request body: the core checks every body against it before the view
    # runs (400 with the schema's ``x-error-code`` where the failing part names one) and it is
    # the body /openapi.json describes
    schema: Optional[dict] = None
    summary: Optional[str] = None  # a line for /openapi.json (else the view's docstring's first)
    # the answers /openapi.json describes: status -> the JSON Schema of its body, or
    # agent_portal.schemas.media(...) for another media type (see agent_portal.schemas)
    responses: Optional[dict] = None
    query: Optional[dict] = None  # the query parameters it reads: name -> JSON Schema (with a description)
    # its own request body limit, where it differs from portal.max_body_bytes (an upload of files)
    max_body_bytes: Optional[int] = None


@dataclass
class Command:
    """A subcommand of ``agent-portal`` that a plugin adds (hook ``portal_commands``).

    ``configure(parser)`` adds its arguments to its argparse parser (``--config`` is already
    there); ``run(args, load_portal)`` does the work and returns the exit code, where
    ``load_portal()`` builds the :class:`agent_portal.Portal` from ``--config``.
    """

    name: str
    help: str
    configure: Callable
    run: Callable


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
    """A model one backend serves. ``portal_name`` marks a name the portal itself gives (such as
    ``agent:<graph>``), not an upstream's raw model name: ``chat.expose_upstream_models: false``
    does not hide it."""

    id: str
    backend: str
    owned_by: str = "agent-portal"
    portal_name: bool = False


@dataclass
class ChatTarget:
    """Where one public model name goes: the backend, its upstream name, fallbacks and prices."""

    model: str
    backend: Any
    upstream_model: str
    fallbacks: tuple = ()
    input_cost_per_token: Optional[float] = None
    output_cost_per_token: Optional[float] = None
    names: tuple = ()  # every name that reaches this upstream model (aliases included)
    portal_name: bool = False  # as ModelInfo.portal_name


@dataclass
class ChatEstimate:
    """What a chat call may use, known before it runs: the prompt's tokens (estimated), the
    completion's ceiling (``max_tokens`` or the config's) and the cost of both.

    An admission hook that reserves capacity appends what it holds to ``holds`` (its own
    objects); the estimate travels on the call's :class:`ChatRecord` as ``reservation``, so the
    same plugin settles its holds from the real figures in ``portal_chat_completed``.
    """

    prompt_tokens: int
    completion_tokens: int
    cost: float
    holds: list = field(default_factory=list)
    record: Any = field(default=None, repr=False, compare=False)  # the call's ChatRecord, as admitted


@dataclass
class Embed:
    """An admin UI the portal can frame under ``/embed/<name>/``; ``headers`` are the upstream
    credentials the portal adds (the caller's own are never forwarded); ``page`` is where the
    console opens it, relative to ``/embed/<name>/`` (LiteLLM's UI is at ``ui/``).
    ``public_url``, for a UI that only works at a site's root: the host of its own where browsers
    reach it (routed by Kong, say); the console frames it there, not through the portal."""

    name: str
    title: str
    url: str
    headers: dict = field(default_factory=dict)
    timeout: float = 30.0
    page: str = ""
    public_url: str | None = None

    @property
    def path(self) -> str:
        """Where the console opens it: ``/embed/<name>/<page>``, or ``<public_url>/<page>``."""
        if self.public_url:
            return f"{self.public_url.rstrip('/')}/{self.page}"
        return f"/embed/{self.name}/{self.page}"


@dataclass
class ChatRecord:
    """One chat call, whatever its outcome. Times are seconds; cost is USD.

    ``call_id`` is the portal's own identity of the call, unique per call and per WebSocket
    message; ``request_id`` is the caller's correlation id and may repeat. ``usage_source``
    says where the token figures came from: ``upstream`` (its usage report) or ``counted``
    (the prompt and the text actually relayed, when the upstream's usage never came);
    ``cost_source`` where the cost came from: ``upstream``, ``config`` or ``learned`` (the
    upstream's last rate for that model), None when no price is known and the cost is 0.
    """

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
    usage_source: str = "upstream"
    cost_source: Optional[str] = None  # upstream, config, learned or mixed; None: no price known (cost 0)
    served_by: Optional[list] = None  # per target (backend, model, tokens, cost) when several served the answer
    skipped_chunks: int = 0  # malformed events the upstream sent that were left out
    call_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    messages: Any = None
    output: Optional[str] = None
    reservation: Any = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict:
        """Return the record as plain JSON-able data (without the payloads and the reservation)."""
        data = {k: v for k, v in self.__dict__.items() if k not in _NOT_EXPORTED}
        return data


_NOT_EXPORTED = ("messages", "output", "reservation")


@dataclass
class AdminChange:
    """One change an admin made (hook ``portal_admin_change``): ``action`` such as
    ``limits.put`` or ``keys.create``, ``target`` what it changed (``keys/3f2a...``), and the
    state ``before`` and ``after`` it (None where there was none), with no secret in either."""

    actor: str
    action: str
    target: str
    before: Any = None
    after: Any = None
    request_id: str = ""
    at: float = field(default_factory=time.time)

