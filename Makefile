# FlightDeck Operator: the two commands a new machine needs are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-12)
# The OTLP/HTTP JSON exporter's test client: its pins conflict with the protobuf exporter's.
JSON_VENV := .venv-otlp-json
JSON_REQUIREMENTS := tests/otlp_json_client/requirements.txt
JSON_STAMP := $(JSON_VENV)/.installed-$(shell sha256sum $(JSON_REQUIREMENTS) | cut -c1-12)
PYTEST_ARGS ?=

.PHONY: demo sandbox browser test test-unit test-store test-cluster test-package lint format control-plane image venv bench clean

## demo: build (or reuse) the local control plane and run the demo on it
demo: venv control-plane
	FLIGHTDECK_BIN_DIR=$$(hack/build-control-plane.sh) $(BIN)/flightdeck-operator dev

## sandbox: the demo, then everything keeps running (control plane, operator, sidecar, dashboard)
sandbox: venv control-plane
	FLIGHTDECK_BIN_DIR=$$(hack/build-control-plane.sh) $(BIN)/flightdeck-operator dev --keep

## test: install everything, build the control plane if missing, run every tier
test: venv control-plane browser
	FLIGHTDECK_BIN_DIR=$$(hack/build-control-plane.sh) $(BIN)/pytest $(PYTEST_ARGS)

test-unit: venv
	$(BIN)/pytest -m unit $(PYTEST_ARGS)

test-store: venv
	$(BIN)/pytest -m store $(PYTEST_ARGS)

test-package: venv
	$(BIN)/pytest -m package $(PYTEST_ARGS)

test-cluster: venv control-plane browser
	FLIGHTDECK_BIN_DIR=$$(hack/build-control-plane.sh) $(BIN)/pytest -m cluster $(PYTEST_ARGS)

## lint: ruff (lint + format check), mypy strict on the package, and the rooms' import contracts
lint: venv
	$(BIN)/ruff check operator tests benchmarks
	$(BIN)/ruff format --check operator tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

format: venv
	$(BIN)/ruff format operator tests benchmarks
	$(BIN)/ruff check --fix operator tests benchmarks

## browser: Debian's Chromium for the dashboard's tests (installed once; Playwright drives it)
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }

## control-plane: build kube-apiserver, kubectl, etcd and helm from Go modules (cached by version)
control-plane:
	hack/build-control-plane.sh >/dev/null

## image: build the image from a Debian base made with mmdebstrap, with buildah (no registry needed)
image:
	hack/build-image.sh

venv: $(STAMP) $(JSON_STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

$(JSON_STAMP): $(JSON_REQUIREMENTS)
	test -x $(JSON_VENV)/bin/python || $(PYTHON) -m venv $(JSON_VENV)
	$(JSON_VENV)/bin/pip install --quiet -r $(JSON_REQUIREMENTS)
	rm -f $(JSON_VENV)/.installed-* && touch $@

## bench: every benchmark (decisions and http start the local control plane)
bench: venv control-plane
	$(BIN)/python benchmarks/evidence.py
	$(BIN)/python benchmarks/ingest.py
	FLIGHTDECK_BIN_DIR=$$(hack/build-control-plane.sh) $(BIN)/python benchmarks/decisions.py
	FLIGHTDECK_BIN_DIR=$$(hack/build-control-plane.sh) $(BIN)/python benchmarks/http.py
	FLIGHTDECK_BIN_DIR=$$(hack/build-control-plane.sh) $(BIN)/python benchmarks/gates.py
	FLIGHTDECK_BIN_DIR=$$(hack/build-control-plane.sh) $(BIN)/python benchmarks/memory.py retention
	FLIGHTDECK_BIN_DIR=$$(hack/build-control-plane.sh) $(BIN)/python benchmarks/memory.py resident
	FLIGHTDECK_BIN_DIR=$$(hack/build-control-plane.sh) $(BIN)/python benchmarks/memory.py restart
	FLIGHTDECK_BIN_DIR=$$(hack/build-control-plane.sh) $(BIN)/python benchmarks/failover.py
	FLIGHTDECK_BIN_DIR=$$(hack/build-control-plane.sh) $(BIN)/python benchmarks/sidecar_scale.py
	FLIGHTDECK_BIN_DIR=$$(hack/build-control-plane.sh) $(BIN)/python benchmarks/verification.py

clean:
	rm -rf $(VENV) $(JSON_VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
