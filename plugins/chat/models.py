"""Which model a name reaches, and who may call it.

A role restriction, a price or a per-model limit set on an alias in ``chat.models`` belongs to
the upstream model the alias points at, so it holds whatever name reaches that model: calling
``X`` by its upstream name is refused to whoever may not call ``premium → X``, and costs what
``premium`` costs. With ``expose_upstream_models: false`` only the aliases are served at all.
"""
from __future__ import annotations

from dataclasses import replace

from agent_portal import Actor, ChatTarget, PortalError
from agent_portal.types import ROLES


class ModelRules:
    """The aliases of ``chat.models`` seen from the upstream models they point at."""

    def __init__(self, aliases: dict, expose_upstream_models: bool, groups_of=None):
        self.aliases = aliases
        self.expose_upstream_models = expose_upstream_models
        self.groups_of = groups_of or (lambda actor: ())  # actor -> the names of their groups (teams)
        self.by_target: dict[tuple, list[str]] = {}
        for alias, entry in aliases.items():
            self.by_target.setdefault((entry["backend"], entry.get("model", alias)), []).append(alias)

    def _rules(self, key: tuple, alias: str | None) -> list[dict]:
        names = list(self.by_target.get(key, ()))
        if alias is not None and alias not in names:
            names.append(alias)
        return [self.aliases[name] for name in names]

    def groups_for(self, key: tuple, alias: str | None = None) -> list[str]:
        """Return the groups named by any alias of the upstream ``key`` (their members may call it)."""
        return sorted({g for rule in self._rules(key, alias) for g in rule.get("groups") or ()})

    def may_call(self, actor, key: tuple, alias: str | None = None, portal_name: bool = False) -> bool:
        """Return True when ``actor`` may call the upstream ``key`` through ``alias`` (or directly;
        ``portal_name`` when that direct name is the portal's own, see ``ModelInfo``): every
        alias of it that names ``roles`` or ``groups`` lets them in by their role or by a group."""
        if alias is None and not portal_name and not self.expose_upstream_models:
            return False
        groups = None
        for rule in self._rules(key, alias):
            roles, named = rule.get("roles"), rule.get("groups")
            if (roles is None and named is None) or (roles is not None and actor.role in roles):
                continue
            if named:
                groups = set(self.groups_of(actor)) if groups is None else groups
                if groups & set(named):
                    continue
            return False
        return True

    def names_for(self, key: tuple, name: str) -> tuple:
        """Return every name that reaches ``key``: ``name``, the upstream name and its aliases."""
        names = [name, key[1], *self.by_target.get(key, ())]
        return tuple(dict.fromkeys(names))

    def prices_for(self, key: tuple) -> tuple:
        """Return the highest (input, output) per-token prices of the aliases of ``key`` (None
        when none sets one), so no name is a cheaper way to the same model."""
        prices_in = [self.aliases[a].get("input_cost_per_token") for a in self.by_target.get(key, ())]
        prices_out = [self.aliases[a].get("output_cost_per_token") for a in self.by_target.get(key, ())]
        return (max((p for p in prices_in if p is not None), default=None),
                max((p for p in prices_out if p is not None), default=None))


def target_key(target) -> tuple:
    """Return (backend, upstream model): what a target reaches, whatever name it was called by."""
    return (target.backend.name, target.upstream_model)


def resolve(portal, rules: ModelRules, actor, model: str, check_access: bool = True) -> ChatTarget:
    """Return where ``model`` goes for ``actor``, with its prices and every name of its target.

    Raises 404 (OpenAI shape) when nobody serves the name (or only aliases are served) and 403
    when the caller's role or groups may not call the model behind it (unless not ``check_access``).
    """
    alias = model if model in rules.aliases else None
    target = portal.hook.portal_chat_backend(portal=portal, model=model)
    if target is None or (alias is None and not target.portal_name and not rules.expose_upstream_models):
        raise PortalError(f"The model `{model}` does not exist or is not served here.", status=404,
                          code="model_not_found", type="invalid_request_error")
    key = target_key(target)
    if check_access and not rules.may_call(actor, key, alias, target.portal_name):
        raise PortalError(f"You may not use the model `{model}`.", status=403, code="model_forbidden")
    changes = {"names": rules.names_for(key, model)}
    if alias is None and target.input_cost_per_token is None and target.output_cost_per_token is None:
        changes["input_cost_per_token"], changes["output_cost_per_token"] = rules.prices_for(key)
    return replace(target, **changes)


def visible_models(portal, rules: ModelRules, actor) -> list[dict]:
    """Return the OpenAI model objects ``actor`` may call, each once: exactly what
    :func:`resolve` would let them call."""
    seen, data = set(), []
    for answer in portal.hook.portal_models(portal=portal, actor=actor):
        for info in answer or []:
            if info.id in seen:
                continue
            entry = rules.aliases.get(info.id)
            if entry is not None:
                allowed = rules.may_call(actor, (entry["backend"], entry.get("model", info.id)), info.id)
            else:
                allowed = rules.may_call(actor, (info.backend, info.id), portal_name=info.portal_name)
            if not allowed:
                continue
            seen.add(info.id)
            data.append({"id": info.id, "object": "model", "created": 0, "owned_by": info.owned_by})
    return data


def model_catalog(portal, rules: ModelRules, prefills=None) -> list[dict]:
    """Return every model name the portal serves (aliases, upstream names, the portal's own such
    as ``agent:``), each with its backend, upstream model, the roles that may call it, its
    per-token prices, its fallbacks and whether it takes a prefill (``supports_prefill``: as
    configured, as its backend says, false once it refused one, else null: not known yet): the
    admin's view."""
    admin = Actor(id="model-catalog", role="admin", via="catalog")
    names = set(rules.aliases)
    for answer in portal.hook.portal_models(portal=portal, actor=admin):
        names.update(info.id for info in answer or [])
    catalog = []
    for name in sorted(names):
        try:
            target = resolve(portal, rules, admin, name, check_access=False)
        except PortalError:
            continue  # not served (an alias whose backend is gone, or hidden upstream names)
        key, alias = target_key(target), name if name in rules.aliases else None
        catalog.append({
            "model": name, "backend": target.backend.name, "upstream_model": target.upstream_model,
            "roles": [role for role in ROLES if rules.may_call(Actor(id="-", role=role, via="catalog"), key, alias,
                                                                target.portal_name)],
            "groups": rules.groups_for(key, alias),
            "input_cost_per_token": target.input_cost_per_token,
            "output_cost_per_token": target.output_cost_per_token,
            "fallbacks": list(target.fallbacks), "alias": alias is not None,
            "supports_prefill": prefills.known(target) if prefills else None,
        })
    return catalog
