"""A plugin that implements every hook of the portal and records what it was asked: the per-hook
tests (test_hooks.py) watch the portal use each implementation."""
from __future__ import annotations

from agent_portal import (Actor, ChatTarget, Command, Embed, HealthCheck, ModelInfo, PortalError, Route,
                          StartupError, UsageProvider, hookimpl)
from agent_portal.upstream import OpenAIUpstream

RECORDER_SECRET = "recorder-signing-secret-5f0c2a9e"


class Recorder:
    """A plugin implementing every hook, recording what the portal asked of it."""

    name = "recorder"

    def __init__(self, fake_upstream=None):
        self.fake = fake_upstream
        self.records = []
        self.shut_down = False
        self.refuse_model = None
        self.metrics = []
        self.key_spend_asked = []
        self.limits_set = []
        self.changes = []

    @hookimpl
    def portal_commands(self):
        def configure(parser):
            parser.add_argument("--who", default="nobody")

        def run(args, load_portal):
            print(f"hello {args.who} from {sorted(load_portal().sources)[0]}")
            return 0

        return [Command("recorder-hello", "say hello", configure, run)]

    @hookimpl
    def portal_jwt_keys(self, portal):
        return {"recorder-issuer": RECORDER_SECRET}

    @hookimpl
    def portal_backends(self, portal):
        backend = portal.extensions.get("recorder-backend")
        return [backend] if backend is not None else []

    @hookimpl
    def portal_wants_payloads(self, portal):
        return True

    @hookimpl
    def portal_spend(self, portal, user, since):
        return 42.0 if user == "big-spender" else None

    @hookimpl
    def portal_key_spend(self, portal, key_id, since):
        self.key_spend_asked.append(key_id)
        return 42.0

    @hookimpl
    def portal_limits_set(self, portal, scope, ident, limits, actor):
        self.limits_set.append((scope, ident, limits, actor.id))  # and lets rate_limits store them

    @hookimpl
    def portal_actor_groups(self, portal, actor):
        return ["recorded-team"] if actor.id.startswith("team-") else []

    @hookimpl
    def portal_admin_change(self, portal, change):
        self.changes.append(change)

    @hookimpl
    def portal_recent_calls(self, portal, limit):
        return [{"call_id": "recorded", "limit": limit}]

    @hookimpl
    def portal_metric(self, portal, name, value, labels):
        self.metrics.append((name, value, labels))

    @hookimpl
    def portal_config_schema(self):
        return {"recorder": {"type": "object", "properties": {"greeting": {"type": "string", "default": "hi"}},
                             "additionalProperties": False}}

    @hookimpl
    def portal_startup(self, portal):
        if portal.plugin_config("recorder").get("greeting") == "refuse":
            raise StartupError("plugin 'recorder': plugins.recorder.greeting may not be 'refuse'")
        portal.extensions["recorder"] = self

    @hookimpl
    def portal_shutdown(self, portal):
        self.shut_down = True

    @hookimpl
    def portal_register_routes(self, portal):
        def greet():
            return {"greeting": portal.plugin_config("recorder")["greeting"]}
        return [Route("/recorder/greet", greet, access="user")]

    @hookimpl
    def portal_actor_from_request(self, portal, request):
        name = request.headers.get("X-Recorder-User")
        return Actor(id=name, role="user", via="recorder") if name else None

    @hookimpl
    def portal_health_checks(self, portal):
        return [HealthCheck("recorder", lambda portal: {"status": "up", "detail": "recording"})]

    @hookimpl
    def portal_usage_providers(self, portal):
        return [UsageProvider("recorder", lambda portal, query: [{"requests": len(self.records)}])]

    @hookimpl
    def portal_models(self, portal, actor):
        return [ModelInfo(id="recorded-echo", backend="recorder")]

    @hookimpl
    def portal_chat_backend(self, portal, model):
        if model != "recorded-echo" or self.fake is None:
            return None
        backend = portal.extensions.setdefault("recorder-backend", OpenAIUpstream(
            portal, "recorder", self.fake.base_url, models=["echo"]))
        return ChatTarget(model=model, backend=backend, upstream_model="echo")

    @hookimpl
    def portal_chat_admission(self, portal, actor, model):
        if model == self.refuse_model:
            raise PortalError("recorder says no", status=429, code="recorder_refused",
                              headers={"Retry-After": "7"})

    @hookimpl
    def portal_chat_completed(self, portal, record):
        self.records.append(record)

    @hookimpl
    def portal_embeds(self, portal):
        return [Embed("recorded-ui", "Recorded UI", "http://127.0.0.1:9")]

    @hookimpl
    def portal_processes(self, portal):
        return [["recorder-hello", "--who", "the run command"]]
