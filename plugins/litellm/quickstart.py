"""``agent-portal up`` (this plugin's command): a local LiteLLM proxy with offline demo models, and
the portal in front of it."""
from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from agent_portal import config_file
from agent_portal.app import checked_config
from agent_portal.launch import gunicorn_argv
from agent_portal.readiness import wait_until_ready


def _secret(path: Path, make) -> str:
    """Return the secret kept in ``path``, making it once so tokens survive a restart."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = make()
    path.write_text(value)
    path.chmod(0o600)
    return value


def port_taken(host: str, port: int) -> bool:
    """Return True when something already listens on ``host:port``."""
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0


def up(args) -> int:
    """Start LiteLLM and the portal, print a token and examples, run until interrupted."""
    state = Path(".cache")
    litellm_bin = Path(args.litellm_bin)
    if not litellm_bin.exists():
        raise SystemExit(f"LiteLLM is not installed at {litellm_bin}; run scripts/run.sh, which installs it")
    for what, host, port, flag in (("the portal", args.host, args.port, "--port"),
                                   ("LiteLLM", "127.0.0.1", args.litellm_port, "--litellm-port")):
        if port_taken(host, port):
            raise SystemExit(f"{host}:{port}, where {what} would listen, is taken (another portal still running?). "
                             f"Stop it, or pick another port: bash scripts/run.sh {flag} <port>")
    config_path = os.path.abspath(args.config or "config/portal.example.yaml")
    env = dict(os.environ)
    env.setdefault("PORTAL_SECRET_KEY", _secret(state / "portal-secret", lambda: secrets.token_urlsafe(32)))
    env.setdefault("LITELLM_MASTER_KEY", _secret(state / "litellm-master-key",
                                                 lambda: "sk-" + secrets.token_hex(16)))
    env["LITELLM_URL"] = f"http://127.0.0.1:{args.litellm_port}"
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    env[config_file.ENV_VAR] = config_path
    # a broken config is said in one clean list (as check-config says it) before anything starts,
    # not as a worker's traceback after LiteLLM has been started for nothing
    checked_config(config_path, env)

    children: list[subprocess.Popen] = []

    def stop(*_):
        for child in reversed(children):
            if child.poll() is None:
                child.terminate()
        for child in children:
            try:  # a local demo: a child that does not stop at once is killed, nobody waits 10 s
                child.wait(3)
            except subprocess.TimeoutExpired:
                child.kill()

    signal.signal(signal.SIGTERM, lambda *a: (stop(), sys.exit(0)))
    try:
        print(f"starting LiteLLM on 127.0.0.1:{args.litellm_port} (log: .cache/litellm.log) ...", flush=True)
        state.mkdir(exist_ok=True)
        log = open(state / "litellm.log", "ab")
        children.append(subprocess.Popen(
            [str(litellm_bin), "--config", args.litellm_config, "--host", "127.0.0.1",
             "--port", str(args.litellm_port), "--num_workers", "1"],
            env=env, stdout=log, stderr=subprocess.STDOUT))
        wait_until_ready(f"{env['LITELLM_URL']}/health/liveliness", 120, children[0], "LiteLLM")

        print(f"starting the portal on {args.host}:{args.port} ...", flush=True)
        portal_env = {**env, "PORTAL_WORKERS": str(args.workers)}
        children.append(subprocess.Popen(gunicorn_argv(config_path, args.host, args.port, args.workers),
                                         env=portal_env))
        started = time.monotonic()
        base = f"http://{args.host}:{args.port}"
        wait_until_ready(f"{base}/ready", 30, children[1], "the portal")
        print(f"portal ready in {time.monotonic() - started:.2f}s", flush=True)
        portal_process = children[1]
        for argv in companions(config_path, env):
            name = "-".join(argv)
            print(f"starting `agent-portal {' '.join(argv)}` (log: .cache/{name}.log) ...", flush=True)
            children.append(subprocess.Popen(
                [sys.executable, "-m", "agent_portal.cli", *argv, "--config", config_path], env=env,
                stdout=open(state / f"{name}.log", "ab"), stderr=subprocess.STDOUT))

        token = _admin_token(config_path, env)
        print(_examples(base, token, config_path, os.path.abspath(state / "portal-secret")), flush=True)
        portal_process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stop()
    return 0


def companions(config_path: str, env: dict, plugins: list | None = None) -> list[list[str]]:
    """Return the ``agent-portal`` commands the enabled plugins want run beside the portal
    (``portal_processes``: the documents job worker, for instance); ``plugins`` as for
    :func:`agent_portal.create_app`."""
    from agent_portal.app import create_app, portal_of

    saved = dict(os.environ)
    os.environ.update(env)
    try:
        portal = portal_of(create_app(config_path, plugins=plugins))
        try:
            return [list(argv) for answer in portal.hook.portal_processes(portal=portal) for argv in answer or []]
        finally:
            portal.shutdown()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _admin_token(config_path: str, env: dict) -> str:
    """Return an admin token from ``agent-portal token`` (the command of whichever plugin signs
    tokens), run with the portal's own environment."""
    answer = subprocess.run([sys.executable, "-m", "agent_portal.cli", "token", "--config", config_path,
                             "--user", "admin", "--role", "admin", "--ttl", "12h",
                             "--email", "admin@localhost"], env=env, capture_output=True, text=True)
    if answer.returncode != 0:
        raise SystemExit(f"could not make an admin token: {answer.stderr.strip()}")
    return answer.stdout.strip()


def _examples(base: str, token: str, config_path: str, secret_path: str) -> str:
    """Return the banner: a token and examples that work pasted as they are into a shell."""
    venv_bin = os.path.dirname(sys.executable)
    return f"""
== Agent Portal is up ==================================================================
An admin token, valid 12 hours:

export PORTAL_TOKEN={token}

Chat, streamed:

curl -N {base}/v1/chat/completions -H "Authorization: Bearer $PORTAL_TOKEN" \\
  -H 'Content-Type: application/json' \\
  -d '{{"model": "demo-chat", "stream": true, "messages": [{{"role": "user", "content": "Hello"}}]}}'

With the openai client:

{sys.executable} - <<'PY'
import os
from openai import OpenAI
client = OpenAI(base_url="{base}/v1", api_key=os.environ["PORTAL_TOKEN"])
for chunk in client.chat.completions.create(model="demo-chat", stream=True,
                                            messages=[{{"role": "user", "content": "Hello"}}]):
    print(chunk.choices[0].delta.content or "" if chunk.choices else "", end="", flush=True)
print()
PY

What it cost, per user and model:  curl "{base}/observability/usage?group_by=user,model" -H "Authorization: Bearer $PORTAL_TOKEN"
Is everything up:                  curl {base}/observability/health -H "Authorization: Bearer $PORTAL_TOKEN"

The command line, in another terminal (it is in {venv_bin}; this run keeps its secret in
{secret_path}):

export AGENT_PORTAL_CONFIG={config_path}
export PORTAL_SECRET_KEY="$(cat {secret_path})"
{venv_bin}/agent-portal keys create --owner alice --name laptop

Stop with Ctrl-C.
========================================================================================
"""
