"""Open WebUI's groups as the portal's teams (``portal_actor_groups``): read with an Open WebUI
admin's API key from Open WebUI's own API, every ``refresh_seconds`` in the background, so a
change of membership holds in the portal within that time and no call waits on Open WebUI.

A member belongs to their groups and to every group above them (``parent_group_id``, as Open
WebUI's ``include_inherited``). Members are matched by Open WebUI user id and by email (an API
key's owner may be either). While Open WebUI cannot answer, the last membership read holds and
health says since when. Custom headers such as ``{{USER_GROUPS}}`` are never read: they are
unsigned.
"""
from __future__ import annotations

import logging
import threading
import time

from agent_portal import HealthCheck, hookimpl
from agent_portal.config import strict_object
from agent_portal.outages import Outage

NAME = "openwebui_groups"
log = logging.getLogger("agent_portal.openwebui_groups")


@hookimpl
def portal_config_schema():
    return {NAME: strict_object({
        "url": {"type": "string", "pattern": "^https?://"},
        "api_key": {"type": "string", "minLength": 8},  # an Open WebUI admin's API key (a secret: checked)
        "refresh_seconds": {"type": "number", "minimum": 0.2, "maximum": 3600, "default": 30},
        "timeout_seconds": {"type": "number", "exclusiveMinimum": 0, "default": 5},
    }, required=["url", "api_key"])}


class GroupDirectory:
    """Who is in which Open WebUI group, as last read."""

    def __init__(self, settings: dict):
        import requests

        self.http = requests.Session()  # its own: read from its own thread
        self.base = settings["url"].rstrip("/")
        self.headers = {"Authorization": f"Bearer {settings['api_key']}"}
        self.refresh_seconds = settings["refresh_seconds"]
        self.timeout = settings["timeout_seconds"]
        self.members: dict[str, tuple] = {}  # user id or lower-cased email -> group names
        self.groups = 0
        self.read_at: float | None = None
        self.outage = Outage(log, "Open WebUI's groups")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def groups_of(self, actor) -> list[str]:
        """Return the names of ``actor``'s groups, inherited ones included."""
        found = self.members.get(actor.id) or ()
        if actor.email:
            found = (*found, *(self.members.get(actor.email.lower()) or ()))
        return sorted(set(found))

    def _get(self, method: str, path: str):
        response = self.http.request(method, self.base + path, headers=self.headers, timeout=self.timeout)
        if response.status_code != 200:
            raise RuntimeError(f"Open WebUI answered {response.status_code} to {method} {path}")
        return response.json()

    def refresh(self) -> None:
        """Read every group and its members again; raises when Open WebUI cannot answer (the
        membership read before stays)."""
        groups = self._get("GET", "/api/v1/groups/")
        if not isinstance(groups, list):
            raise RuntimeError("Open WebUI's group list is not a list")
        by_id = {g["id"]: g for g in groups if isinstance(g, dict) and isinstance(g.get("id"), str)}
        members: dict[str, set] = {}
        for group in by_id.values():
            names = _with_ancestors(group, by_id)
            for user in self._get("POST", f"/api/v1/groups/id/{group['id']}/users") or []:
                for who in (user.get("id"), (user.get("email") or "").lower() or None):
                    if isinstance(who, str):
                        members.setdefault(who, set()).update(names)
        self.members = {who: tuple(sorted(names)) for who, names in members.items()}
        self.groups, self.read_at = len(by_id), time.time()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh()
            except Exception as exc:
                self.outage.failed(exc)
            else:
                self.outage.answered()
            self._stop.wait(self.refresh_seconds)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="openwebui-groups", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.http.close()

    def health(self) -> dict:
        """Return up with how many groups were read and when, or degraded since when and why."""
        away = self.outage.state()
        if away is None and self.read_at is not None:
            return {"status": "up", "groups": self.groups, "members": len(self.members),
                    "read_at": self.read_at, "detail": f"read every {self.refresh_seconds:g} s"}
        kept = "no membership read yet: no group limits apply" if self.read_at is None else \
            "the membership read last holds"
        return {"status": "degraded", "since": away["since"] if away else None,
                "detail": f"Open WebUI's groups cannot be read {self.outage.describe()}; {kept}"}


def _with_ancestors(group: dict, by_id: dict) -> set:
    names, seen = set(), set()
    while group is not None and group["id"] not in seen:
        seen.add(group["id"])
        if isinstance(group.get("name"), str):
            names.add(group["name"])
        group = by_id.get(group.get("parent_group_id"))
    return names


@hookimpl
def portal_startup(portal):
    directory = GroupDirectory(portal.plugin_config(NAME))
    portal.extensions[NAME] = directory
    directory.start()


@hookimpl
def portal_shutdown(portal):
    portal.extensions[NAME].stop()


@hookimpl
def portal_actor_groups(portal, actor):
    return portal.extensions[NAME].groups_of(actor)


@hookimpl
def portal_health_checks(portal):
    directory = portal.extensions[NAME]
    return [HealthCheck("openwebui_groups", lambda portal: directory.health(), timeout=1.0)]
