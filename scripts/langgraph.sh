#!/usr/bin/env bash
# Starts a local LangGraph server for the agents plugin: `langgraph dev` (in memory, offline) with
# the example graphs of tests/langgraph_project, on 127.0.0.1:PORT (default 2024, where the
# portal's LANGGRAPH_URL points). `langgraph dev` moves to another port on its own when PORT is
# taken, and the portal would then reach whatever holds PORT: this refuses instead, loudly.
#   bash scripts/langgraph.sh [PORT]
set -euo pipefail
cd "$(dirname "$0")/.."
port="${1:-2024}"
if python3 -c "import socket,sys; s=socket.socket(); sys.exit(0 if s.connect_ex(('127.0.0.1', int(sys.argv[1]))) else 1)" "$port"; then
  :
else
  echo "scripts/langgraph.sh: 127.0.0.1:$port is taken; stop what holds it, or pick another port" \
       "(bash scripts/langgraph.sh PORT, and LANGGRAPH_URL=http://127.0.0.1:PORT for the portal)" >&2
  exit 1
fi
if [ ! -x .cache/langgraph-venv/bin/langgraph ]; then
  bash scripts/setup.sh
fi
cd tests/langgraph_project
export LANGGRAPH_CLI_NO_ANALYTICS=1 LANGSMITH_TRACING=false
exec ../../.cache/langgraph-venv/bin/langgraph dev --host 127.0.0.1 --port "$port" --no-browser --no-reload
