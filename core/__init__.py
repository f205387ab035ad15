"""Agent Portal: one door to a self-hosted AI stack.

A plugin needs ``hookimpl`` and the value types exported here for every hook (docs/plugin_hooks.md
lists the hooks). The helpers the built-in plugins also use (config schemas, the SSE relay, the
reverse proxy, token checks, metering) are the package's modules, each one job, named in
docs/architecture.md; a plugin may use them too.
"""
import pluggy

hookimpl = pluggy.HookimplMarker("agent_portal")

from .errors import AuthError, PortalError, StartupError  # noqa: E402
from .types import (  # noqa: E402
    Actor, AdminChange, ChatEstimate, ChatRecord, ChatTarget, Command, Embed, HealthCheck, ModelInfo, Route,
    UsageProvider,
)
from .usage import UsageQuery  # noqa: E402
from .app import Portal, create_app, portal_of  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "hookimpl", "create_app", "portal_of", "Portal", "Actor", "AdminChange", "ChatEstimate", "ChatRecord",
    "ChatTarget", "Command", "Embed", "HealthCheck", "ModelInfo", "Route", "UsageProvider", "AuthError", "PortalError",
    "StartupError", "UsageQuery",
]
