#!/usr/bin/env bash
# Installs what the portal needs into this checkout, idempotently:
#   .venv/                  the portal and the test tools; with --documents also the documents
#                           extra (no torch); with --browser (the tests) also the torch embedder
#   .cache/litellm-venv/    a LiteLLM proxy in its own virtual environment (offline demo models)
#   .cache/langgraph-venv/  a LangGraph server (langgraph dev) in its own virtual environment
# With --browser (the tests), also Debian's chromium and python3.11-doc, when running as root.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
# one setup at a time in a checkout: two test runs started together would otherwise both write .venv
mkdir -p .cache
exec 9>.cache/setup.lock
flock 9

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
case " $* " in
  *" --browser "*) extras="test,documents,documents-torch" ;;
  *" --documents "*) extras="test,documents" ;;
  *) extras="test" ;;
esac
if [ "$extras" = "test,documents,documents-torch" ]; then
  # CPU torch before sentence-transformers, so that it never pulls a CUDA build (this machine
  # kind serves torch 2.13.0's CPU wheel locally; elsewhere add
  # --index-url https://download.pytorch.org/whl/cpu)
  if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    .venv/bin/python -m pip install -q 'torch==2.13.0'
  fi
fi
.venv/bin/python -m pip install -q -e ".[$extras]"

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

# With --browser (the tests): Debian's chromium for the browser tests, python3.11-doc, the
# public document set of the documents evaluation (bench/docs_eval.py), and Node.js with npm,
# which compile the Open WebUI patch (webui_patch/check_patch.py) and its test harness
if [ "${1:-}" = "--browser" ]; then  # (the tests: also both embedders, above)
  missing=""
  command -v chromium >/dev/null 2>&1 || missing="chromium"
  command -v npm >/dev/null 2>&1 || missing="$missing nodejs npm"
  [ -f /usr/share/doc/python3.11/html/genindex-all.html ] || missing="$missing python3.11-doc"
  if [ -n "$missing" ] && [ "$(id -u)" = "0" ]; then
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
  elif [ -n "$missing" ]; then
    echo "setup: $missing missing and this is not root; the browser test and the evaluation will say so" >&2
  fi
fi
