#!/usr/bin/env bash
# Builds libtokenizers.a with cargo (--locked) from the Rust source of the
# github.com/daulet/tokenizers version that go.mod requires (v1.22.1), taken from the Go module
# cache, into $CACHE/tokenizers-VERSION/. Instant when cached.
# Used by the Makefile and by Dockerfile.cuda.
set -euo pipefail
cache=${LLM4REC_CACHE:-$HOME/.cache/llm4rec}
command -v go >/dev/null || { echo "deps-tokenizers: go not found: install Go 1.26 (https://go.dev/dl)" >&2; exit 1; }
# the version go.mod requires; v1.22.1 is the newest whose Rust crates all come from crates.io
ver=$(cd "$(dirname "$0")/.." && go list -m -f '{{.Version}}' github.com/daulet/tokenizers)
out="$cache/tokenizers-${ver#v}"
[ -f "$out/libtokenizers.a" ] && exit 0
command -v cargo >/dev/null || { echo "deps-tokenizers: cargo not found: install Rust with rustup (https://rustup.rs) to build libtokenizers.a" >&2; exit 1; }
src=$(go mod download -json "github.com/daulet/tokenizers@$ver" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -n "$src" ] && [ -f "$src/Cargo.lock" ] || { echo "deps-tokenizers: could not find the module source of daulet/tokenizers $ver" >&2; exit 1; }
work="$cache/build/tokenizers-${ver#v}"
rm -rf "$work"; mkdir -p "$work"
cp -r "$src"/. "$work"/; chmod -R u+w "$work"
echo "deps-tokenizers: building libtokenizers.a (cargo build --release --locked; a few minutes the first time)" >&2
(cd "$work" && cargo build --release --locked --lib)
mkdir -p "$out"
cp "$work/target/release/libtokenizers.a" "$out/libtokenizers.a.tmp" && mv "$out/libtokenizers.a.tmp" "$out/libtokenizers.a"
rm -rf "$work"
echo "deps-tokenizers: built $out/libtokenizers.a" >&2
