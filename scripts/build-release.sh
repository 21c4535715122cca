#!/usr/bin/env bash
# Builds what the CUDA image ships, into OUT (default ./dist): OUT/bin/llm4rec, OUT/lib (ONNX
# Runtime 1.29.0 with its CUDA 13 provider) and the default bundle's fetched weights in place.
# Dockerfile.cuda runs exactly this; `make test-docker` runs it too and checks the result, so
# the image cannot rot unseen.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/dist}
cache=${LLM4REC_CACHE:-$HOME/.cache/llm4rec}
cd "$root"
scripts/deps-ort.sh cuda
scripts/deps-tokenizers.sh
tok=$(go list -m -f '{{.Version}}' github.com/daulet/tokenizers)
mkdir -p "$out/bin" "$out/lib"
CGO_LDFLAGS="-L$cache/tokenizers-${tok#v}" go build -trimpath \
  -ldflags "-X github.com/llm4rec/llm4rec/engine.Version=$(git describe --tags --always --dirty 2>/dev/null || echo dev)" \
  -o "$out/bin/llm4rec" ./cmd/llm4rec
cp -L "$cache"/onnxruntime-1.29.0/lib/libonnxruntime.so.1 \
      "$cache"/onnxruntime-1.29.0/lib/libonnxruntime_providers_cuda.so \
      "$cache"/onnxruntime-1.29.0/lib/libonnxruntime_providers_shared.so "$out/lib/"
scripts/fetch-weights.sh models/movielens-100k/1
echo "build-release: $out/bin/llm4rec, $out/lib" >&2
