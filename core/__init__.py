"""Agent Portal: one door to a self-hosted AI stack.

Plugin authors need only ``hookimpl`` and the value types exported here.
"""
import pluggy

hookimpl = pluggy.HookimplMarker("agent_portal")

from .errors import AuthError, PortalError, StartupError  # noqa: E402
from .types import (  # noqa: E402
    Actor, ChatEstimate, ChatRecord, ChatTarget, Command, Embed, HealthCheck, ModelInfo, Route, UsageProvider,
)
from .app import Portal, create_app, portal_of  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "hookimpl", "create_app", "portal_of", "Portal", "Actor", "ChatEstimate", "ChatRecord", "ChatTarget",
    "Command", "Embed", "HealthCheck", "ModelInfo", "Route", "UsageProvider", "AuthError", "PortalError",
    "StartupError",
]
