#!/usr/bin/env bash
# Builds what Dockerfile.cuda builds, through the same script, and checks it: the build stage
# runs scripts/build-release.sh, every path the runtime stage copies from the build stage
# exists, the binary runs against the shipped ONNX Runtime and the shipped bundle validates.
# No Docker engine is needed. Used by `make test`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
df=Dockerfile.cuda
grep -q '^RUN scripts/build-release.sh /out$' "$df" || { echo "test-dockerfile: $df does not build through scripts/build-release.sh /out" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
scripts/build-release.sh "$out" 2>/dev/null
# every COPY --from=build SRC: /out/... maps to $out, /src/... to the repository
grep -E '^COPY --from=build ' "$df" | awk '{print $3}' | while read -r src; do
  case "$src" in
    /out/*) p="$out/${src#/out/}" ;;
    /src/*) p="$root/${src#/src/}" ;;
    *) echo "test-dockerfile: unexpected COPY source $src" >&2; exit 1 ;;
  esac
  [ -e "$p" ] || { echo "test-dockerfile: $df copies $src, which the build does not produce" >&2; exit 1; }
done
ort=$(grep -oE 'ORT_LIB=[^ ]+' "$df" | cut -d= -f2)
[ "$ort" = /opt/onnxruntime/lib/libonnxruntime.so.1 ] || { echo "test-dockerfile: ORT_LIB is $ort" >&2; exit 1; }
# the output is captured first: with pipefail, `version | grep -q` fails whenever grep has
# matched and gone before version finished writing (SIGPIPE)
v=$(ORT_LIB="$out/lib/libonnxruntime.so.1" "$out/bin/llm4rec" version 2>&1) && grep -q '^onnxruntime 1.29.0' <<<"$v" \
  || { echo "test-dockerfile: the built binary does not run on the shipped ONNX Runtime: $v" >&2; exit 1; }
ORT_LIB="$out/lib/libonnxruntime.so.1" "$out/bin/llm4rec" models validate models/movielens-100k/1 >/dev/null
bundle=$(grep -oE '"--bundle", "[^"]+"' "$df" | sed 's/.*"\/models\//models\//; s/"$//')
[ -f "$bundle/manifest.json" ] || { echo "test-dockerfile: the image's default bundle $bundle is not in the repository" >&2; exit 1; }
echo "test-dockerfile: ok (what $df builds, built and checked)"
