"""The ``agent-portal`` command: serve, check-config, plugins, routes, and the plugins' own commands
(``portal_commands``: ``token``, ``keys``, ``up``...)."""
from __future__ import annotations

import argparse
import json
import os
import sys

from . import config as cfg
from . import config_file
from .errors import StartupError
from .launch import gunicorn_argv


def _build(args, plugins: list | None = None):
    from .app import create_app, portal_of

    return portal_of(create_app(args.config, plugins=plugins))


def cmd_check_config(args) -> int:
    """Print the effective config with secrets masked; exit 1 with every error when invalid.
    Reads and checks only: no plugin starts, no table or file is made."""
    from .app import checked_config

    config, _pm, _sources = checked_config(args.config)
    print(json.dumps(cfg.masked(config), indent=2, default=str))
    return 0


def cmd_plugins(args) -> int:
    """Print installed plugins, whether each is enabled, and the hooks each implements."""
    from .plugin_manager import discover_builtins, discover_entry_points, plugin_hooks

    portal = _build(args)
    hooks = plugin_hooks(portal.pm)
    builtins = discover_builtins()
    rows = []
    for name in list(builtins) + sorted(discover_entry_points()):
        rows.append({"name": name, "source": portal.sources.get(name, "built-in" if name in builtins
                                                                 else "entry point"),
                     "enabled": name in portal.sources, "hooks": hooks.get(name, [])})
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            mark = "on " if row["enabled"] else "off"
            print(f"[{mark}] {row['name']:<18} {row['source']:<12} {', '.join(row['hooks'])}")
    return 0


def cmd_openapi(args) -> int:
    """Print the OpenAPI 3.1 document of the configured portal's routes (no server started)."""
    from .openapi import build_document

    portal = _build(args)
    try:
        print(json.dumps(build_document(portal), indent=2))
    finally:
        portal.shutdown()
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


def cmd_serve(args) -> int:
    """Run the portal under gunicorn with the gevent worker (replaces this process)."""
    argv = gunicorn_argv(args.config, args.host, args.port, args.workers)
    os.execvpe(argv[0], argv, {**os.environ, config_file.ENV_VAR: os.path.abspath(args.config)}
               if args.config else dict(os.environ))
    return 0  # not reached


def plugin_commands(plugins: list | None = None) -> list:
    """Return the :class:`agent_portal.Command` of every installed plugin and of ``plugins``
    (``portal_commands``)."""
    from .hooks import call_each
    from .plugin_manager import catalog_plugin_manager

    commands = []
    for answer in call_each(catalog_plugin_manager(plugins).hook.portal_commands):
        commands.extend(answer.value or [])
    return commands


CORE_COMMANDS = ("serve", "check-config", "plugins", "routes", "openapi")


def build_parser(plugins: list | None = None, with_plugin_commands: bool = True) -> argparse.ArgumentParser:
    """Return the command line: the core's commands and (unless told not to) every plugin's;
    ``plugins`` as for :func:`agent_portal.create_app`."""
    parser = argparse.ArgumentParser(prog="agent-portal", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p):
        p.add_argument("--config", default=os.environ.get(config_file.ENV_VAR),
                       help=f"YAML config file (default ${config_file.ENV_VAR})")
        return p

    serve = with_config(sub.add_parser("serve", help="serve the portal (gunicorn, gevent worker)"))
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--workers", type=int, default=0, help="default: from the CPU count")
    serve.set_defaults(func=cmd_serve)

    check = with_config(sub.add_parser("check-config", help="print the effective config, secrets masked"))
    check.set_defaults(func=cmd_check_config)

    listing = with_config(sub.add_parser("plugins", help="installed and enabled plugins and their hooks"))
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_plugins)

    document = with_config(sub.add_parser("openapi", help="print the OpenAPI 3.1 document of the routes"))
    document.set_defaults(func=cmd_openapi)

    routes = with_config(sub.add_parser("routes", help="every route with its access"))
    routes.add_argument("--json", action="store_true")
    routes.set_defaults(func=cmd_routes)

    for command in plugin_commands(plugins) if with_plugin_commands else []:
        parser_of = with_config(sub.add_parser(command.name, help=command.help))
        command.configure(parser_of)
        parser_of.set_defaults(func=lambda args, run=command.run: run(args, lambda: _build(args, plugins)))
    return parser


def main(argv=None, plugins: list | None = None) -> int:
    """Run the command line; returns the exit code. ``plugins`` as for :func:`agent_portal.create_app`."""
    argv = sys.argv[1:] if argv is None else list(argv)
    # loading every plugin to list its commands costs; a core command does not need them
    core_only = bool(argv) and argv[0] in CORE_COMMANDS and "-h" not in argv and "--help" not in argv
    args = build_parser(plugins, with_plugin_commands=not core_only).parse_args(argv)
    if getattr(args, "config", "") is None and args.func is not cmd_plugins:
        # without a config the portal would start empty and every plugin's command look disabled
        print(f"agent-portal: no config: pass --config FILE or set {config_file.ENV_VAR} (the run command's banner "
              "shows both, and where it keeps PORTAL_SECRET_KEY)", file=sys.stderr)
        return 2
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
