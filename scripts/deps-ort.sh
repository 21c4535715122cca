#!/usr/bin/env bash
# Installs ONNX Runtime 1.29.0 (CPU core library) into the cache, pinned and checksummed.
#   scripts/deps-ort.sh          core library from npm onnxruntime-node@1.29.0
#   scripts/deps-ort.sh cuda     adds the CUDA 13 execution provider libraries from
#                                com.github.asus4.onnxruntime.linux-x64-gpu@0.4.9
# Prints nothing on a warm cache; the library path is $CACHE/onnxruntime-1.29.0/lib/libonnxruntime.so.1.
# Used by the Makefile and by Dockerfile.cuda.
set -euo pipefail
cache=${LLM4REC_CACHE:-$HOME/.cache/llm4rec}
dir="$cache/onnxruntime-1.29.0"
core_pkg=onnxruntime-node@1.29.0
core_tgz=onnxruntime-node-1.29.0.tgz
core_sha=cfdfb45ec4044b1fdca43e5d2e180fb6817e649ff8ad1e0dfc90e18e51b67037
cuda_pkg=com.github.asus4.onnxruntime.linux-x64-gpu@0.4.9
cuda_tgz=com.github.asus4.onnxruntime.linux-x64-gpu-0.4.9.tgz
cuda_sha=2b459e0c17f340c92970c10ed86de4f37a3009f93c14053e6ad4334cbb6be412

[ "$(uname -sm)" = "Linux x86_64" ] || { echo "deps-ort: only linux x86_64 is supported (got $(uname -sm))" >&2; exit 1; }

fetch() { # fetch PKG TGZ SHA -> path of the verified tarball
  local pkg=$1 tgz=$2 sha=$3 dl="$cache/downloads"
  mkdir -p "$dl"
  if [ ! -f "$dl/$tgz" ] || ! echo "$sha  $dl/$tgz" | sha256sum -c --status; then
    command -v npm >/dev/null || { echo "deps-ort: npm not found: install Node.js with npm (https://nodejs.org) to fetch $pkg" >&2; exit 1; }
    echo "deps-ort: fetching $pkg from the npm registry" >&2
    local tmp; tmp=$(mktemp -d "$dl/tmp.XXXXXX")
    (cd "$tmp" && npm pack --silent "$pkg" >/dev/null)
    echo "$sha  $tmp/$tgz" | sha256sum -c --status || { echo "deps-ort: checksum mismatch for $tgz (want $sha)" >&2; rm -rf "$tmp"; exit 1; }
    mv "$tmp/$tgz" "$dl/$tgz"; rm -rf "$tmp"
  fi
  echo "$dl/$tgz"
}

if [ ! -f "$dir/lib/libonnxruntime.so.1" ]; then
  tgz=$(fetch "$core_pkg" "$core_tgz" "$core_sha")
  tmp=$(mktemp -d "$cache/tmp.XXXXXX")
  tar xzf "$tgz" -C "$tmp" package/bin/napi-v6/linux/x64/libonnxruntime.so.1
  mkdir -p "$dir/lib"
  mv "$tmp/package/bin/napi-v6/linux/x64/libonnxruntime.so.1" "$dir/lib/libonnxruntime.so.1"
  ln -sf libonnxruntime.so.1 "$dir/lib/libonnxruntime.so"
  rm -rf "$tmp"
  echo "deps-ort: installed ONNX Runtime 1.29.0 in $dir/lib" >&2
fi

if [ "${1:-}" = "cuda" ] && [ ! -f "$dir/lib/libonnxruntime_providers_cuda.so" ]; then
  tgz=$(fetch "$cuda_pkg" "$cuda_tgz" "$cuda_sha")
  tmp=$(mktemp -d "$cache/tmp.XXXXXX")
  tar xzf "$tgz" -C "$tmp" package/Plugins/Linux/x64/libonnxruntime_providers_cuda.so package/Plugins/Linux/x64/libonnxruntime_providers_shared.so
  mv "$tmp"/package/Plugins/Linux/x64/libonnxruntime_providers_shared.so "$dir/lib/"
  mv "$tmp"/package/Plugins/Linux/x64/libonnxruntime_providers_cuda.so "$dir/lib/"
  rm -rf "$tmp"
  echo "deps-ort: installed the CUDA 13 execution provider in $dir/lib (needs CUDA 13 and cuDNN 9 at run time)" >&2
fi
