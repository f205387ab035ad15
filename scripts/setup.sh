#!/usr/bin/env bash
# Installs what the portal needs into this checkout, idempotently:
#   .venv/                  the portal and its test tools
#   .cache/litellm-venv/    a LiteLLM proxy in its own virtual environment (offline demo models)
#   .cache/langgraph-venv/  a LangGraph server (langgraph dev) in its own virtual environment
# With --browser (the tests), also Debian's chromium for the browser test, when running as root.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[test]'

if [ ! -x .cache/litellm-venv/bin/litellm ]; then
  mkdir -p .cache
  rm -rf .cache/litellm-venv
  "$PYTHON" -m venv .cache/litellm-venv
  .cache/litellm-venv/bin/python -m pip install -q --upgrade pip >/dev/null
  # prisma beside it: without it a missing key answers 500 instead of 401
  .cache/litellm-venv/bin/python -m pip install -q 'litellm[proxy]>=1.60' prisma
fi

# a LangGraph server (`langgraph dev`, in memory, offline) for the agents tests and the quickstart
if [ ! -x .cache/langgraph-venv/bin/langgraph ]; then
  mkdir -p .cache
  rm -rf .cache/langgraph-venv
  "$PYTHON" -m venv .cache/langgraph-venv
  .cache/langgraph-venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .cache/langgraph-venv/bin/python -m pip install -q 'langgraph-cli[inmem]>=0.4,<0.5' \
    'langgraph-api>=0.16,<0.17' 'langchain-core>=1.0'
fi

if [ "${1:-}" = "--browser" ] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ]; then
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "setup: chromium is missing and this is not root; the browser test will say so" >&2
  fi
fi
