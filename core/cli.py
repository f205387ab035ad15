"""The ``agent-portal`` command: serve, up, check-config, plugins, routes, keys, token."""
from __future__ import annotations

import argparse
import json
import os
import sys

from . import config as cfg
from .errors import StartupError


def _build(args):
    from .app import create_app, portal_of

    return portal_of(create_app(args.config))


def cmd_check_config(args) -> int:
    """Print the effective config with secrets masked; exit 1 with every error when invalid."""
    portal = _build(args)
    print(json.dumps(cfg.masked(portal.config), indent=2, default=str))
    return 0


def cmd_plugins(args) -> int:
    """Print installed plugins, whether each is enabled, and the hooks each implements."""
    from .plugin_manager import BUILTIN_PLUGINS, discover_entry_points, plugin_hooks

    portal = _build(args)
    hooks = plugin_hooks(portal.pm)
    rows = []
    for name in list(BUILTIN_PLUGINS) + sorted(discover_entry_points()):
        rows.append({"name": name, "source": portal.sources.get(name, "built-in" if name in BUILTIN_PLUGINS
                                                                 else "entry point"),
                     "enabled": name in portal.sources, "hooks": hooks.get(name, [])})
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            mark = "on " if row["enabled"] else "off"
            print(f"[{mark}] {row['name']:<18} {row['source']:<12} {', '.join(row['hooks'])}")
    return 0


def cmd_routes(args) -> int:
    """Print every route with its methods, access and plugin."""
    portal = _build(args)
    rows = [{k: r[k] for k in ("path", "methods", "access", "plugin")} for r in portal.routes]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            print(f"{','.join(r['methods']):<12} {r['path']:<36} {r['access']:<7} {r['plugin']}")
    return 0


def cmd_token(args) -> int:
    """Print a portal-signed token for ``--user`` with ``--role``."""
    from agent_portal.plugins.portal_tokens import mint_token

    portal = _build(args)
    if "portal_tokens" not in portal.sources:
        raise StartupError("plugin 'portal_tokens' is not enabled in this config")
    print(mint_token(portal, args.user, args.role, cfg.parse_duration(args.ttl), email=args.email))
    return 0


def cmd_keys(args) -> int:
    """Create, list or revoke portal API keys."""
    from agent_portal.plugins.api_keys import store_of

    portal = _build(args)
    if "api_keys" not in portal.sources:
        raise StartupError("plugin 'api_keys' is not enabled in this config")
    store = store_of(portal)
    if args.action == "create":
        from datetime import timedelta

        expires = cfg.parse_duration(args.expires)
        created = store.create(args.owner, args.role, args.name or "",
                               timedelta(seconds=expires) if expires else None)
        print(json.dumps(created, indent=2))
        print("Keep the key now: it is not shown again.", file=sys.stderr)
    elif args.action == "list":
        print(json.dumps(store.list(), indent=2))
    else:
        if not store.revoke(args.id):
            print(f"no active key with id {args.id}", file=sys.stderr)
            return 1
        print(f"revoked {args.id}")
    return 0


def cmd_serve(args) -> int:
    """Run the portal under gunicorn with the gevent worker (replaces this process)."""
    argv = gunicorn_argv(args.config, args.host, args.port, args.workers)
    os.execvpe(argv[0], argv, {**os.environ, cfg.ENV_VAR: os.path.abspath(args.config)}
               if args.config else dict(os.environ))
    return 0  # not reached


def gunicorn_argv(config, host, port, workers) -> list[str]:
    """Return the command line that serves the portal under gunicorn."""
    # By file path: importing the package in gunicorn's master would load ssl before gevent patches it.
    conf = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gunicorn_conf.py")
    argv = [sys.executable, "-m", "gunicorn", "-c", conf,
            "--bind", f"{host}:{port}"]
    if workers:
        argv += ["--workers", str(workers)]
    return argv + ["agent_portal.wsgi:app"]


def cmd_up(args) -> int:
    """Start a local LiteLLM proxy with offline demo models, then the portal in front of it."""
    from .quickstart import up

    return up(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agent-portal", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p):
        p.add_argument("--config", default=os.environ.get(cfg.ENV_VAR),
                       help=f"YAML config file (default ${cfg.ENV_VAR})")
        return p

    serve = with_config(sub.add_parser("serve", help="serve the portal (gunicorn, gevent worker)"))
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--workers", type=int, default=0, help="default: from the CPU count")
    serve.set_defaults(func=cmd_serve)

    up = with_config(sub.add_parser("up", help="start a local LiteLLM with demo models and the portal"))
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--port", type=int, default=8080)
    up.add_argument("--litellm-port", type=int, default=4000)
    up.add_argument("--litellm-config", default="config/litellm.yaml")
    up.add_argument("--litellm-bin", default=os.environ.get("LITELLM_BIN", ".cache/litellm-venv/bin/litellm"))
    up.add_argument("--workers", type=int, default=1)
    up.set_defaults(func=cmd_up)

    check = with_config(sub.add_parser("check-config", help="print the effective config, secrets masked"))
    check.set_defaults(func=cmd_check_config)

    plugins = with_config(sub.add_parser("plugins", help="installed and enabled plugins and their hooks"))
    plugins.add_argument("--json", action="store_true")
    plugins.set_defaults(func=cmd_plugins)

    routes = with_config(sub.add_parser("routes", help="every route with its access"))
    routes.add_argument("--json", action="store_true")
    routes.set_defaults(func=cmd_routes)

    token = with_config(sub.add_parser("token", help="print a portal-signed token"))
    token.add_argument("--user", required=True)
    token.add_argument("--role", choices=["user", "admin"], default="user")
    token.add_argument("--ttl", default="1h", help="lifetime such as 15m, 1h, 30d")
    token.add_argument("--email")
    token.set_defaults(func=cmd_token)

    keys = with_config(sub.add_parser("keys", help="portal API keys"))
    key_sub = keys.add_subparsers(dest="action", required=True)
    create = key_sub.add_parser("create")
    create.add_argument("--owner", required=True)
    create.add_argument("--role", choices=["user", "admin"], default="user")
    create.add_argument("--name")
    create.add_argument("--expires", help="lifetime such as 30d; default never")
    key_sub.add_parser("list")
    revoke = key_sub.add_parser("revoke")
    revoke.add_argument("id")
    for p in (create, key_sub.choices["list"], revoke):
        p.add_argument("--config", default=argparse.SUPPRESS)
    keys.set_defaults(func=cmd_keys)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except StartupError as exc:
        print(f"agent-portal: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"agent-portal: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
