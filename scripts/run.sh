#!/usr/bin/env bash
# One command from a fresh clone to a working chat: installs, starts a local LiteLLM proxy with
# offline demo models, starts the portal in front of it, and prints a token and examples.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/agent-portal up --config "${AGENT_PORTAL_CONFIG:-config/portal.example.yaml}" "$@"
