# Build glue for Karo. `make test` installs and starts everything the tests need.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: all build test test-env crd lint fmt clean

all: build

build:
	$(CARGO) build --release

# Installs etcd, kube-apiserver (built once, cached in ~/.cache/karo), Alertmanager,
# promtool and Helm, then runs every test against them.
test:
	@set -euo pipefail; \
	eval "$$(bash tests/platform/setup.sh)"; \
	$(CARGO) fmt --all -- --check; \
	$(CARGO) clippy --all-targets --quiet -- -D warnings; \
	$(CARGO) test --no-fail-fast

test-env:
	@bash tests/platform/setup.sh

# Regenerates the committed CRD from the Rust types.
crd:
	$(CARGO) run --quiet -- crd > config/crd/karo.io_alertreactions.yaml
	cp config/crd/karo.io_alertreactions.yaml charts/karo/crds/karo.io_alertreactions.yaml

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
