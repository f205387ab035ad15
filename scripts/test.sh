#!/usr/bin/env bash
# Installs everything the tests need, then runs the whole suite: unit, plugin and integration
# (a real LiteLLM proxy, PostgreSQL, Redis and a headless browser). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --browser
export LITELLM_BIN="$PWD/.cache/litellm-venv/bin/litellm"
exec .venv/bin/python -m pytest "$@"
