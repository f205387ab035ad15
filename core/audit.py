"""Admin changes as they happen: every admin route that changes something (any method but GET,
HEAD and OPTIONS, answered below 400) is announced once to ``portal_admin_change``.

A view says what it changed with :func:`note_change` (the state before and after); a view that
says nothing is announced with its method, path and JSON body, secrets masked. A route open to
users announces only what its view noted of a change an admin made through it (an admin sharing
someone's collection): what users do to their own things is never on the trail, and no caller
can write to it.
"""
from __future__ import annotations

import json
import logging
import re

from flask import g, request

from .hooks import call_each
from .types import AdminChange

log = logging.getLogger("agent_portal.audit")

_CHANGING = ("POST", "PUT", "PATCH", "DELETE")
_SECRET_NAME = re.compile(r"(key|token|secret|password|passwd|authorization|cookie|credential)", re.I)
_MAX_BODY = 16_384


def note_change(action: str, target: str, before=None, after=None) -> None:
    """Say what the current admin request changed: ``action`` (``limits.put``), ``target``
    (``users/alice``) and the state ``before`` and ``after`` it. Returns nothing; the change is
    announced when the answer leaves with a status below 400."""
    g.admin_change = {"action": action, "target": target, "before": before, "after": after}


def masked(value):
    """Return ``value`` (parsed JSON) with the value of every key that names a secret replaced."""
    if isinstance(value, dict):
        return {k: ("***" if isinstance(k, str) and _SECRET_NAME.search(k) and v not in (None, "")
                    else masked(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v) for v in value]
    return value


def _body_of_request():
    if request.mimetype != "application/json" or (request.content_length or 0) > _MAX_BODY:
        return None
    try:
        return masked(json.loads(request.get_data(cache=True) or b"null"))
    except (ValueError, UnicodeDecodeError):
        return None


def announce_admin_change(portal, response, access: str | None) -> None:
    """Announce the current request's change when it is an admin route that changed something
    (see the module docstring); never raises."""
    if request.method not in _CHANGING or response.status_code >= 400:
        return
    actor = g.get("actor")
    if actor is None or not (access == "admin" or (actor.role == "admin" and g.get("admin_change"))):
        return
    noted = g.get("admin_change") or {
        "action": f"{request.method} {request.url_rule.rule if request.url_rule else request.path}",
        "target": request.path, "before": None, "after": _body_of_request()}
    change = AdminChange(actor=actor.id, request_id=g.get("request_id", ""), **noted)
    for answer in call_each(portal.hook.portal_admin_change, portal=portal, change=change):
        if answer.error is not None:
            log.error("an admin change could not be recorded by %s: %s (%s %s)", answer.plugin,
                      answer.error, change.action, change.target)
