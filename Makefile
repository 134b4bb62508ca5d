# Build glue for Karo. `make test` installs and starts everything the tests need.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: all build test test-env crd lint fmt clean bench image

all: build

build:
	$(CARGO) build --release

# Installs and starts everything the tests run against: a single-node Kubernetes
# cluster (kubelet, controller manager, scheduler, kube-proxy, containerd; built once
# from Debian's kubernetes source, cached in ~/.cache/karo), the kube-apiserver of the
# same build for the per-test control planes, etcd, Alertmanager, promtool, Helm,
# and Karo's own image; then runs every test. The cluster is stopped at the end.
test:
	@set -euo pipefail; \
	bash tests/platform/cluster/build.sh; \
	eval "$$(bash tests/platform/setup.sh)"; \
	$(CARGO) fmt --all -- --check; \
	$(CARGO) clippy --all-targets --quiet -- -D warnings; \
	$(MAKE) --no-print-directory image; \
	trap 'bash tests/platform/cluster/stop.sh' EXIT; \
	bash tests/platform/cluster/start.sh >&2; \
	eval "$$(bash tests/platform/cluster/exports.sh)"; \
	$(CARGO) test --no-fail-fast --lib --bins --tests

# Karo's image without a registry: the release binary on the Debian 12 runtime that
# distroless cc-debian12 carries, as a docker-archive at target/karo-image.tar that
# `ctr images import` accepts. The last line printed is the image reference.
KARO_VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
IMAGE ?= docker.io/dudizimber/karo:$(KARO_VERSION)
image:
	@$(CARGO) build --release --locked --bin karo
	@python3 tests/platform/image.py $${CARGO_TARGET_DIR:-target}/release/karo target/karo-image.tar $(IMAGE)

# Throughput, latency, memory and reload figures against baselines measured in the
# same run (BENCHMARKS.md); starts its own etcd and kube-apiserver.
bench:
	@set -euo pipefail; \
	eval "$$(bash tests/platform/setup.sh)"; \
	$(CARGO) build --release --bin karo; \
	mkdir -p target/karo-bench; \
	cp -f $${CARGO_TARGET_DIR:-target}/release/karo target/karo-bench/karo; \
	KARO_BENCH_BIN=$$PWD/target/karo-bench/karo $(CARGO) bench --bench karo_bench

# Karo end to end on this machine: installs the platform, starts a local control
# plane, Karo and Alertmanager, fires an alert and shows the Job Karo created.
.PHONY: demo
demo:
	@bash tests/platform/demo.sh

test-env:
	@bash tests/platform/setup.sh

# Regenerates the committed CRD from the Rust types, and the chart's copy of the
# Job skeleton.
crd:
	$(CARGO) run --quiet -- crd alertreactions > config/crd/karo.io_alertreactions.yaml
	$(CARGO) run --quiet -- crd alertreactionruns > config/crd/karo.io_alertreactionruns.yaml
	cp config/crd/karo.io_alertreactionruns.yaml charts/karo/crds/karo.io_alertreactionruns.yaml
	cp config/crd/karo.io_alertreactions.yaml charts/karo/crds/karo.io_alertreactions.yaml
	cp templates/job.yaml charts/karo/files/job.yaml

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
