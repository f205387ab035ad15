#!/usr/bin/env bash
# One command from a fresh clone to a working chat: installs, starts a local LiteLLM proxy with
# offline demo models, starts the portal in front of it, and prints a token and examples.
set -euo pipefail
cd "$(dirname "$0")/.."
config="${AGENT_PORTAL_CONFIG:-config/portal.example.yaml}"
bash scripts/setup.sh
# the documents stack (the job queue, parsers, stores, the ONNX embedder) only when the config turns documents on
if .venv/bin/python -m agent_portal.plugins.documents.needed "$config"; then
  bash scripts/setup.sh --documents
fi
exec .venv/bin/agent-portal up --config "$config" "$@"
