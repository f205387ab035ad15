"""The hooks a plugin may implement, grouped by phase.

Every hook is called with keyword arguments. Unless a hook says "first result wins",
pluggy gathers every plugin's non-None answer into a list.
"""
from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("agent_portal")


# --- configuration and startup -------------------------------------------------------


@hookspec
def portal_config_schema():
    """Describe this plugin's config section.

    Returns ``{plugin_name: json_schema}`` for the section ``plugins.<plugin_name>``; the core
    validates the section against it at startup and reports every error at once.
    """


@hookspec
def portal_startup(portal):
    """Validate and prepare this plugin for the app ``portal``.

    Returns nothing. Raise :class:`agent_portal.StartupError` to refuse to boot; the message
    should name the plugin and the config key at fault.
    """


@hookspec
def portal_shutdown(portal):
    """Release what ``portal_startup`` acquired (threads, connections) and flush queued work.

    Returns nothing. Called once per app at process exit; must not block for long.
    """


@hookspec
def portal_commands():
    """Add subcommands to ``agent-portal``.

    Returns a list of :class:`agent_portal.Command`. Asked of every installed plugin, enabled
    or not (the command line is built before a config is read); a command that needs the plugin
    enabled says so when it runs.
    """


# --- routes and who is calling -------------------------------------------------------------


@hookspec
def portal_register_routes(portal):
    """Declare this plugin's HTTP and WebSocket routes.

    Returns a list of :class:`agent_portal.Route`; each declares its access (``public``,
    ``user`` or ``admin``). The core refuses to start when a route declares no access or two
    plugins claim the same path and method.
    """


@hookspec(firstresult=True)
def portal_actor_from_request(portal, request):
    """Find the caller of ``request``. First result wins; the order comes from ``auth.order``.

    Returns an :class:`agent_portal.Actor`, or None when the request carries no credential of
    this plugin's kind. Raise :class:`agent_portal.AuthError` when it does carry one and that
    credential is bad (expired, forged, revoked, or its issuer cannot be reached).
    """


@hookspec
def portal_jwt_keys(portal):
    """Name the HS256 keys this plugin's tokens are signed with.

    Returns ``{issuer: secret}`` (issuer None for tokens without an ``iss`` claim); the core
    merges every answer after startup and checks each token with the key of its issuer.
    """


# --- what the stack offers -------------------------------------------------------------------


@hookspec
def portal_health_checks(portal):
    """Name this plugin's health checks.

    Returns a list of :class:`agent_portal.HealthCheck`. The core runs every check
    concurrently, each under its own timeout, so one that raises or hangs shows as that
    component's failure only.
    """


@hookspec
def portal_usage_providers(portal):
    """Name this plugin's usage providers.

    Returns a list of :class:`agent_portal.UsageProvider`; each answers one
    :class:`agent_portal.UsageQuery` with a list of usage rows (see ``agent_portal.usage``).
    """


@hookspec
def portal_models(portal, actor):
    """List the models ``actor`` may use through this plugin.

    Returns a list of :class:`agent_portal.ModelInfo` (empty when none).
    """


@hookspec
def portal_backends(portal):
    """List the chat backends this plugin runs.

    Returns a list of backend objects (see :class:`agent_portal.upstream.OpenAIUpstream`): each
    has a ``name``, ``model_ids()``, ``reachable``, ``last_error``, and the chat methods
    ``attribute``, ``request_headers(request_id, actor, session_id)``, ``send_chat`` (which
    answers in OpenAI's format) and ``upstream_call_id(request_id, response)``.
    """


@hookspec(firstresult=True)
def portal_chat_backend(portal, model):
    """Find the backend that serves the public model name ``model``. First result wins.

    Returns a :class:`agent_portal.ChatTarget` (backend plus upstream model name and price),
    or None when this plugin does not serve that model.
    """


@hookspec(firstresult=True)
def portal_chat_target(portal, actor, model):
    """Say where ``model`` goes for ``actor`` with the model's roles applied: for a plugin that
    calls a chat model on a user's behalf (the documents' answer model). First result wins.

    Returns a :class:`agent_portal.ChatTarget`, or None when this plugin keeps no rules for
    models (``portal_chat_backend`` alone then says where it goes). Raises
    :class:`agent_portal.PortalError`: 403 when ``actor`` may not use the model, 404 when it is
    not served.
    """


@hookspec
def portal_chat_admission(portal, actor, model, target, estimate):
    """Decide, before the upstream is called, whether ``actor`` may chat with ``model`` now.

    ``target`` is the :class:`agent_portal.ChatTarget` the name resolved to (``target.names``
    holds every name of that upstream model); ``estimate`` is the call's
    :class:`agent_portal.ChatEstimate`. A plugin that reserves capacity appends its holds to
    ``estimate.holds`` and settles them from ``record.reservation`` in ``portal_chat_completed``.

    Returns nothing to admit. Raise :class:`agent_portal.PortalError` (429 with ``Retry-After``
    for a limit, 503 when the limit store cannot answer) to refuse; the call is then recorded as
    refused and never reaches the upstream.
    """


@hookspec
def portal_chat_readmission(portal, estimate, prompt_tokens, cost):
    """An admitted call found it will use ``prompt_tokens`` and ``cost`` more than its
    ``estimate`` (an upload whose parsed text is longer than its size promised), before doing
    that work. A plugin that reserved capacity adds to its holds in ``estimate.holds``.

    Returns nothing. Raise :class:`agent_portal.PortalError` (429) to stop the work: the call
    is then recorded as refused.
    """


@hookspec
def portal_wants_payloads(portal):
    """Say whether this plugin records prompts and answers (a tracer that logs payloads).

    Returns True to have chat keep each call's messages and output on its record; asked once,
    at startup.
    """


@hookspec
def portal_chat_completed(portal, record):
    """Receive one :class:`agent_portal.ChatRecord` per chat call, streamed or not.

    Returns nothing. Called off the request path, one plugin at a time; an exception is logged
    and never reaches the caller or the other plugins.
    """


# --- what was used, and what it cost --------------------------------------------------------


@hookspec(firstresult=True)
def portal_spend(portal, user, since):
    """Say what ``user``'s chat calls since ``since`` (an aware datetime) cost. First result wins.

    Returns USD as a float, or None when this plugin keeps no record of spend.
    """


@hookspec(firstresult=True)
def portal_key_spend(portal, key_id, since):
    """Say what the calls made with API key ``key_id`` since ``since`` (an aware datetime)
    cost. First result wins.

    Returns USD as a float, or None when this plugin keeps no record of spend.
    """


@hookspec(firstresult=True)
def portal_limits_set(portal, scope, ident, limits, actor):
    """Set, at runtime, the limits of ``ident`` in ``scope`` (``users``, ``keys``, ``roles``,
    ``models`` or ``groups``) to ``limits`` (the keys of ``rate_limits.<scope>.<id>``), on
    behalf of the admin ``actor``. First result wins.

    Returns ``{"before", "entry"}`` (the runtime entry before and after), or None when this
    plugin keeps no limits.
    """


@hookspec(firstresult=True)
def portal_recent_calls(portal, limit):
    """List the newest ``limit`` chat calls, newest first. First result wins.

    Returns a list of dicts (the fields of :class:`agent_portal.ChatRecord`, ``started_at`` as
    ISO 8601), or None when this plugin keeps no calls.
    """


@hookspec
def portal_metric(portal, name, value, labels):
    """Record one measurement: set the gauge or add ``value`` to the counter ``name``.

    ``labels`` is a dict (may be empty). Returns nothing; must not raise. The names are the
    emitting plugin's own; the metrics plugin exports those it knows as ``portal_<name>`` (the
    ledger's backlog gauges, README "What the ledger promises").
    """


@hookspec
def portal_embeds(portal):
    """Name the admin UIs this plugin can embed.

    Returns a list of :class:`agent_portal.Embed`.
    """


@hookspec
def portal_processes(portal):
    """Name the processes a one-command local run (``agent-portal up``) starts beside the
    serving workers, such as a job worker.

    Returns a list of argument lists for ``agent-portal`` (``[["worker"]]``); the run adds
    ``--config``, starts each, and stops each with the portal. Only enabled plugins are asked.
    """


# --- who belongs where, and who changed what ---------------------------------------------------


@hookspec
def portal_actor_groups(portal, actor):
    """Name the groups (teams) ``actor`` belongs to, such as their Open WebUI groups.

    Returns a list of group names (an inherited group included), or None when this plugin does
    not know the actor. Called on the request path: answer from memory, never a network call.
    """


@hookspec
def portal_admin_change(portal, change):
    """Receive one :class:`agent_portal.AdminChange`: an admin's change (a limit, a key, a
    switch) that the portal made, with who made it and what it was before and after.

    Returns nothing. Called once per change after it took effect; an exception is logged and
    never reaches the caller.
    """
