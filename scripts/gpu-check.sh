#!/usr/bin/env bash
# One-command GPU check, run from the project root on the GPU machine after the device calls
# that scripts/gpu-prepare.sh prints (see ../shared/gpu/README.md):
#   1. the engine conformance suite (prebuilt `go test -run Conformance ./engine/ort/`) on CPU
#      and CUDA;
#   2. `llm4rec bench throughput` of the bundle on CUDA and CPU, every graph and the pipeline,
#      raw beside the engine's path, batches 1,8,64,256, short points.
# Sized to finish in under 4 minutes on an H100. Writes into $OUT (the device tool's folder;
# default bin/gpu-check): version.txt, nvidia-smi.txt, conformance.txt, throughput.txt,
# throughput.json, throughput.png, throughput-latency.png.
# Settings (environment): BUNDLE (default from /tmp/ort/gpu-check.env, else
# models/movielens-100k/1), DURATION (per point, default 500ms), BATCHES (default 1,8,64,256),
# LLM4REC_BIN and ORT_TEST (the binaries; default /tmp/ort/llm4rec and /tmp/ort/ort.test, else
# bin/gpu/).
# On a machine with CUDA set up already (ORT_LIB and LD_LIBRARY_PATH), it runs as is.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

# ONNX Runtime with its CUDA provider: let ../shared/gpu/remote.sh assemble it and set
# ORT_LIB and LD_LIBRARY_PATH, then come back here
if [ -z "${ORT_LIB:-}" ] && [ -f /tmp/ort/remote.sh ]; then
  exec bash /tmp/ort/remote.sh run bash "$root/scripts/gpu-check.sh" "$@"
fi

[ -f /tmp/ort/gpu-check.env ] && . /tmp/ort/gpu-check.env
unzstd() { if command -v zstd >/dev/null; then zstd -d -q; else LD_LIBRARY_PATH=/tmp/ort:${LD_LIBRARY_PATH:-} /tmp/ort/zstd -d -q; fi; }
# the binaries gpu-prepare.sh packed, once
if [ -f /tmp/ort/llm4rec-gpu.tar.zst ] && [ ! -x /tmp/ort/llm4rec ]; then
  unzstd < /tmp/ort/llm4rec-gpu.tar.zst | tar -x -C /tmp/ort || { echo "gpu-check: cannot unpack the binaries" >&2; exit 1; }
fi
bundle=${BUNDLE:-models/movielens-100k/1}
out=${OUT:-$root/bin/gpu-check}
duration=${DURATION:-500ms}
batches=${BATCHES:-1,8,64,256}
pick() { for f in "$@"; do [ -x "$f" ] && { echo "$f"; return; }; done; echo "$1"; }
bin=$(pick "${LLM4REC_BIN:-/tmp/ort/llm4rec}" "$root/bin/gpu/llm4rec" "$root/bin/llm4rec")
ort_test=$(pick "${ORT_TEST:-/tmp/ort/ort.test}" "$root/bin/gpu/ort.test")
mkdir -p "$out"
start=$(date +%s)
say() { echo "gpu-check: [$(( $(date +%s) - start ))s] $*"; }

# the bundle's files carried in pieces (gpu-prepare.sh), once
if ls /tmp/ort/b[0-9][0-9] >/dev/null 2>&1 && [ ! -f "$bundle/text_encoder.weights" ]; then
  mkdir -p "${BUNDLE_DEST:-.}"
  cat /tmp/ort/b[0-9][0-9] | unzstd | tar -x -C "${BUNDLE_DEST:-.}" \
    || { echo "gpu-check: cannot unpack the bundle pieces" >&2; exit 1; }
  say "unpacked the bundle's carried files into ${BUNDLE_DEST:-.}"
fi

status=0
nvidia-smi > "$out/nvidia-smi.txt" 2>&1 || echo "nvidia-smi failed" >> "$out/nvidia-smi.txt"
"$bin" version > "$out/version.txt" 2>&1 || true
cat "$out/version.txt"

say "conformance suite (engine/ort) on CPU and CUDA"
(cd engine/ort && "$ort_test" -test.run Conformance -test.v -test.count 1) > "$out/conformance.txt" 2>&1
rc=$?
grep -E '^(--- |ok|FAIL|PASS)|skip' "$out/conformance.txt" | head -20
if [ $rc -ne 0 ]; then
  say "conformance FAILED (exit $rc), see conformance.txt"; status=1
elif grep -q -- '--- SKIP: TestConformanceCUDA' "$out/conformance.txt"; then
  say "conformance passed on CPU; CUDA was skipped (unusable), see conformance.txt"; status=1
else
  say "conformance passed on CPU and CUDA"
fi

say "bench throughput of $bundle: cuda and cpu, batches $batches, $duration a point"
"$bin" bench throughput --bundle "$bundle" --providers cuda,cpu --batches "$batches" --duration "$duration" \
  --min-calls 2 --out "$out" --plot > "$out/throughput.txt" 2> "$out/throughput.log"
rc=$?
cat "$out/throughput.txt"
if [ $rc -ne 0 ]; then
  tail -5 "$out/throughput.log"
  say "bench throughput FAILED (exit $rc), see throughput.log"; status=1
fi
say "done, results in $out"
exit $status
