#!/usr/bin/env bash
# Creates or updates the Python environment of export/ (training and export of model bundles):
# a virtualenv at $LLM4REC_CACHE/venv-export (default ~/.cache/llm4rec) with export/requirements.txt,
# skipped when its stamp (sha256 of requirements.txt) matches; and espeak-ng (speech for the audio
# encoder's training), installed with apt-get when missing and possible.
# Prints nothing on a warm cache. Used by the Makefile (bundle, models, test-python).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache=${LLM4REC_CACHE:-$HOME/.cache/llm4rec}
venv="$cache/venv-export"
req="$root/export/requirements.txt"

command -v python3 >/dev/null || { echo "deps-python: python3 not found: install Python 3.11 (https://www.python.org/downloads/)" >&2; exit 1; }
python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' || { echo "deps-python: python3 is $(python3 -c 'import platform; print(platform.python_version())'): Python 3.10 or newer is needed" >&2; exit 1; }

if ! command -v espeak-ng >/dev/null; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo -n"
  if command -v apt-get >/dev/null && { [ -z "$sudo" ] || sudo -n true 2>/dev/null; }; then
    echo "deps-python: installing espeak-ng with apt-get" >&2
    { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq espeak-ng; } >/dev/null 2>&1 \
      || { echo "deps-python: apt-get install espeak-ng failed: install espeak-ng (https://github.com/espeak-ng/espeak-ng)" >&2; exit 1; }
  else
    echo "deps-python: espeak-ng not found: install it (apt-get install espeak-ng, brew install espeak-ng)" >&2; exit 1
  fi
fi

want=$(sha256sum "$req" | cut -d' ' -f1)
if [ -x "$venv/bin/python" ] && [ -f "$venv/stamp" ] && [ "$(cat "$venv/stamp")" = "$want" ]; then
  exit 0
fi
mkdir -p "$cache"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" >/dev/null 2>&1 || { rm -rf "$venv"; echo "deps-python: python3 -m venv failed: install the venv module (apt-get install python3-venv)" >&2; exit 1; }
fi
echo "deps-python: installing export/requirements.txt into $venv (a few minutes the first time)" >&2
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req" \
  || { echo "deps-python: pip install -r export/requirements.txt failed" >&2; exit 1; }
echo "$want" > "$venv/stamp"
echo "deps-python: ready: $venv" >&2
