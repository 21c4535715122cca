#!/usr/bin/env bash
# Prepares the one-command GPU check (scripts/gpu-check.sh) for the GPU machine, following
# ../shared/gpu/README.md: builds llm4rec and the engine conformance test binary (ort.test)
# for x86-64 into bin/gpu/, then has ../shared/gpu/prepare.sh split them, ONNX Runtime and
# its CUDA provider into .gpu/1, .gpu/2, ... (git-ignored; one device call each). The bundle's
# files that do not travel with the working tree (text_encoder.weights, or the whole bundle
# when it lies outside the repository) are packed (tar + zstd) into pieces bNN added to the
# same folders; gpu-check.sh unpacks them there.
#   scripts/gpu-prepare.sh [BUNDLE]     default models/movielens-100k/1
# Then, one device call per folder, each within 30 s of the previous one's end (the script
# prints them):
#   1:    bash .gpu/1/remote.sh stash .gpu/1                                carry [".gpu/1"]
#   2..:  bash /tmp/ort/remote.sh stash .gpu/N                              carry [".gpu/N"]
#   last: bash /tmp/ort/remote.sh stash .gpu/N && bash scripts/gpu-check.sh carry [".gpu/N"]
set -euo pipefail
root=$(git rev-parse --show-toplevel)
cd "$root"
bundle=${1:-${BUNDLE:-models/movielens-100k/1}}
shared=${LLM4REC_SHARED_GPU:-$root/../shared/gpu}
die() { echo "gpu-prepare: $*" >&2; exit 1; }

[ -x "$shared/prepare.sh" ] || die "$shared/prepare.sh not found (set LLM4REC_SHARED_GPU to the folder of prepare.sh)"
command -v zstd >/dev/null || die "zstd not found: install it (apt-get install zstd)"
[ -f "$bundle/manifest.json" ] || die "no bundle at $bundle (manifest.json missing): train it with \`make models\`"
[ -f "$bundle/text_encoder.weights" ] || die "$bundle/text_encoder.weights missing: run scripts/fetch-weights.sh $bundle"

# 1. binaries, stripped and packed (every byte travels over the device calls); built into
# bin/gpu/ so that a concurrent `make build` of bin/llm4rec cannot swap them
export CGO_LDFLAGS="${CGO_LDFLAGS:-$(go env CGO_LDFLAGS)}"
version=$(git describe --tags --always --dirty 2>/dev/null || echo dev)
mkdir -p bin/gpu
go build -ldflags "-s -w -X github.com/llm4rec/llm4rec/engine.Version=$version" -o bin/gpu/llm4rec ./cmd/llm4rec
go test -c -ldflags "-s -w" -o bin/gpu/ort.test ./engine/ort/
tar -C bin/gpu -cf - llm4rec ort.test | zstd -q -9 -T0 -f -o bin/gpu/llm4rec-gpu.tar.zst
echo "gpu-prepare: built bin/gpu/llm4rec and bin/gpu/ort.test, packed in bin/gpu/llm4rec-gpu.tar.zst ($(( $(stat -c %s bin/gpu/llm4rec-gpu.tar.zst) / 1024 / 1024 )) MiB)"

# 2. ONNX Runtime, its CUDA provider and the binaries into .gpu/N
"$shared/prepare.sh" bin/gpu/llm4rec-gpu.tar.zst

# 3. what of the bundle does not travel with the tree, packed into pieces bNN
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
abs_bundle=$(cd "$bundle" && pwd)
case "$abs_bundle/" in
"$root"/*)
  rel=${abs_bundle#"$root"/}
  # files of the bundle that git would not carry (ignored ones)
  comm -23 <(cd "$root" && find "$rel" -type f | sort) \
           <(cd "$root" && git ls-files --cached --others --exclude-standard -- "$rel" | sort) > "$tmp/files"
  dest=. remote_bundle=$rel
  (cd "$root" && tar -cf - -T "$tmp/files") | zstd -q -6 -T0 -o "$tmp/bundle.tar.zst"
  ;;
*)
  base=$(basename "$abs_bundle")
  (cd "$abs_bundle/.." && find "$base" -type f) > "$tmp/files"
  dest=/tmp/ort/bundles remote_bundle=/tmp/ort/bundles/$base
  (cd "$abs_bundle/.." && tar -cf - -T "$tmp/files") | zstd -q -6 -T0 -o "$tmp/bundle.tar.zst"
  ;;
esac
printf 'BUNDLE=${BUNDLE:-%s}\nBUNDLE_DEST=${BUNDLE_DEST:-%s}\n' "$remote_bundle" "$dest" > .gpu/1/gpu-check.env

# the same budget prepare.sh uses: 60 MiB a call, less the tree that travels with every call
tree=$(git ls-files -z --cached --others --exclude-standard | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
[ -d "$root/shared" ] && tree=$((tree + $(du -sb "$root/shared" | cut -f1)))
budget=$((60 * 1024 * 1024 - tree))
size=$(stat -c %s "$tmp/bundle.tar.zst")
n=$(ls -d .gpu/[0-9]* | sed 's|.gpu/||' | sort -n | tail -1)
used=$(du -sb ".gpu/$n" | cut -f1)
off=0 piece=0
while [ "$off" -lt "$size" ]; do
  room=$((budget - used))
  if [ "$room" -le $((1024 * 1024)) ]; then n=$((n + 1)); used=0; mkdir -p ".gpu/$n"; continue; fi
  dd if="$tmp/bundle.tar.zst" of=".gpu/$n/b$(printf %02d $piece)" bs=1M iflag=skip_bytes,count_bytes skip=$off count=$room status=none
  got=$(stat -c %s ".gpu/$n/b$(printf %02d $piece)")
  off=$((off + got)) used=$((used + got)) piece=$((piece + 1))
done
echo "gpu-prepare: bundle $bundle: $(wc -l < "$tmp/files") file(s) not in the tree, $((size / 1024 / 1024)) MiB packed in $piece piece(s)"
du -sh .gpu/*

echo
echo "device calls, each within 30 s of the previous one's end:"
last=$n
for i in $(seq 1 "$last"); do
  if [ "$i" = 1 ]; then cmd="bash .gpu/1/remote.sh stash .gpu/1"; else cmd="bash /tmp/ort/remote.sh stash .gpu/$i"; fi
  if [ "$i" = "$last" ]; then cmd="$cmd && bash scripts/gpu-check.sh"; fi
  echo "  $cmd    carry [\".gpu/$i\"]"
done
echo "results: under \$OUT (conformance.txt, throughput.txt, throughput.json, throughput*.png)"
