"""The systems the failover suite scores, each pointed at the wall with the methodology's baseline
(up to two retries, a 30 s first-token and stream-idle timeout, one fallback), times ``scale``:

- ``portal-openai_compat``: the portal, its ``openai_compat`` backend straight at the wall;
- ``portal-litellm``: the portal through its ``litellm`` backend, a LiteLLM proxy that only relays
  (no retries or fallbacks of its own), as the shipped config runs it;
- ``litellm-proxy``: a LiteLLM proxy alone, owning retries and fallbacks (its router settings).
"""
from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import yaml

from failover_wall import FAULTS
from procs import free_port, stop, wait_http

ROOT = Path(__file__).resolve().parent.parent
SYSTEMS = ("portal-openai_compat", "portal-litellm", "litellm-proxy")
HEALTHY = ("fb-ok", "fb-ok-noprefill")


class System:
    def __init__(self, name, port, headers, processes):
        self.name, self.port, self.headers, self.processes = name, port, headers, processes
        self.path = "/v1/chat/completions"

    def stop(self):
        stop(self.processes)


def fallback_of(model):
    return "fb-ok-noprefill" if model == "fb-s14-stream-cut" else "fb-ok"


def start_system(name, wall, workdir, scale):
    """Start ``name``; returns a :class:`System`, or None when LiteLLM is not installed."""
    if name == "portal-openai_compat":
        return start_portal(name, workdir, scale, backend="wall", upstream={"openai_compat": {"upstreams": {
            "wall": {"base_url": wall.base_url, "models": sorted(FAULTS) + list(HEALTHY)}}}}, processes=[])
    if name == "portal-litellm":
        litellm = start_litellm(wall, workdir, scale, own_failover=False)
        if litellm is None:
            return None
        process, port, key = litellm
        return start_portal(name, workdir, scale, backend="litellm", processes=[process], upstream={
            "litellm": {"url": f"http://127.0.0.1:{port}", "api_key": key}})
    if name == "litellm-proxy":
        litellm = start_litellm(wall, workdir, scale, own_failover=True)
        if litellm is None:
            return None
        process, port, key = litellm
        return System(name, port, {"Authorization": f"Bearer {key}"}, [process])
    raise SystemExit(f"unknown system {name!r}: one of {', '.join(SYSTEMS)}")


def portal_config(workdir, name, scale, backend, upstream) -> dict:
    models = {m: {"backend": backend, "model": m, "fallbacks": [fallback_of(m)]} for m in FAULTS}
    models.update({m: {"backend": backend, "model": m} for m in HEALTHY})
    if backend != "litellm":
        # what an admin declares for a model that refuses prefills; behind LiteLLM the portal reads
        # it from LiteLLM's model info (supports_assistant_prefill) instead
        models["fb-ok-noprefill"]["supports_prefill"] = False
    return {
        "portal": {"secret_key": secrets.token_urlsafe(32), "database_url": f"sqlite:///{workdir}/{name}.db",
                   "log_level": "WARNING"},
        "plugins": {
            "chat": {"first_token_timeout_seconds": 30 * scale, "between_chunks_timeout_seconds": 30 * scale,
                     "call_budget_seconds": 120 * scale, "retries": 2,
                     "circuit_breaker": {"failures": 5, "cooloff_seconds": 30 * scale}, "models": models},
            "portal_tokens": {}, "ledger": {"journal_dir": f"{workdir}/{name}-journal"}, "observability": {},
            **upstream,
        },
    }


def start_portal(name, workdir, scale, backend, upstream, processes):
    path = Path(workdir) / f"{name}.yaml"
    path.write_text(yaml.safe_dump(portal_config(workdir, name, scale, backend, upstream)))
    port = free_port()
    from agent_portal.launch import gunicorn_argv

    env = {**os.environ, "AGENT_PORTAL_CONFIG": str(path), "PORTAL_WORKERS": "1", "PORTAL_GRACEFUL_SECONDS": "2"}
    log = open(Path(workdir) / f"{name}.log", "wb")
    process = subprocess.Popen(gunicorn_argv(str(path), "127.0.0.1", port, 1), env=env, stdout=log, stderr=log)
    processes.append(process)
    try:
        wait_http(f"http://127.0.0.1:{port}/ready", 60, process)
        token = subprocess.check_output(
            [sys.executable, "-m", "agent_portal.cli", "token", "--config", str(path), "--user", "failover-suite",
             "--role", "user", "--ttl", "2h"], env=env, text=True).strip().splitlines()[-1]
    except BaseException:
        stop(processes)
        raise
    return System(name, port, {"Authorization": f"Bearer {token}"}, processes)


def start_litellm(wall, workdir, scale, own_failover):
    """Start a LiteLLM proxy in front of the wall; returns ``(process, port, key)`` or None."""
    binary = os.environ.get("LITELLM_BIN", str(ROOT / ".cache/litellm-venv/bin/litellm"))
    if not Path(binary).exists():
        return None
    key = "sk-" + secrets.token_hex(16)
    model_list = [{"model_name": m, "litellm_params": {"model": f"openai/{m}", "api_base": wall.base_url,
                                                       "api_key": "x"}} for m in sorted(FAULTS) + list(HEALTHY)]
    for entry in model_list:
        if entry["model_name"] == "fb-ok-noprefill":
            entry["model_info"] = {"supports_assistant_prefill": False}
    if own_failover:
        settings = {"num_retries": 2, "request_timeout": 30 * scale, "drop_params": True}
        router = {"fallbacks": [{m: [fallback_of(m)]} for m in FAULTS]}
    else:  # a relay: the portal owns retries, timeouts and fallbacks
        settings, router = {"num_retries": 0, "request_timeout": 600, "drop_params": True}, {}
    config = {"model_list": model_list, "litellm_settings": settings, "general_settings": {"master_key": key}}
    if router:
        config["router_settings"] = router
    path = Path(workdir) / f"litellm-{'own' if own_failover else 'relay'}.yaml"
    path.write_text(yaml.safe_dump(config))
    port = free_port()
    log = open(Path(workdir) / f"{path.stem}.log", "wb")
    process = subprocess.Popen([binary, "--config", str(path), "--host", "127.0.0.1", "--port", str(port),
                                "--num_workers", "1"], env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"},
                               stdout=log, stderr=log)
    wait_http(f"http://127.0.0.1:{port}/health/liveliness", 150, process)
    return process, port, key
