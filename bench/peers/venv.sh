#!/usr/bin/env bash
# Creates or updates the virtualenv of the Python peers of `make bench-peers` at
# $LLM4REC_CACHE/venv-peers (default ~/.cache/llm4rec) from bench/peers/requirements.txt,
# skipped when its stamp (sha256 of requirements.txt) matches. Prints the venv's python.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${LLM4REC_CACHE:-$HOME/.cache/llm4rec}
venv="$cache/venv-peers"
req="$here/requirements.txt"
command -v python3 >/dev/null || { echo "bench-peers: python3 not found: install Python 3.11" >&2; exit 1; }
want=$(sha256sum "$req" | cut -d' ' -f1)
if ! { [ -x "$venv/bin/python" ] && [ -f "$venv/stamp" ] && [ "$(cat "$venv/stamp")" = "$want" ]; }; then
  mkdir -p "$cache"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv" >/dev/null 2>&1 \
    || { rm -rf "$venv"; echo "bench-peers: python3 -m venv failed: install the venv module (apt-get install python3-venv)" >&2; exit 1; }
  echo "bench-peers: installing bench/peers/requirements.txt into $venv" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req" \
    || { echo "bench-peers: pip install -r bench/peers/requirements.txt failed" >&2; exit 1; }
  echo "$want" > "$venv/stamp"
fi
echo "$venv/bin/python"
