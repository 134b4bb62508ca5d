#!/usr/bin/env bash
# Builds everything Karo's single-node Kubernetes 1.20 test cluster needs, using
# only Debian packages (no container registry is reachable from the test machines):
#
#   * Debian packages: containerd, runc, CNI plugins, etcd, iptables, ... and the
#     build tools (Go 1.19, gcc);
#   * kube-apiserver, kubelet, kube-controller-manager, kube-scheduler, kube-proxy
#     and kubectl, from Debian's `kubernetes` source package (1.20.2), static
#     (CGO_ENABLED=0), in one `make` call;
#   * two images as docker-archive tarballs, imported by start.sh with
#     `ctr images import`:  local/pause:1 (the sandbox image, Kubernetes' own
#     build/pause/linux/pause.c compiled with `gcc -static`) and local/busybox:1
#     (busybox-static plus the static kubectl, so a Job can run
#     `kubectl rollout restart ...` with its ServiceAccount).
#
# Everything lands in ${KARO_CACHE:-~/.cache/karo}/cluster (bin/, images/,
# build.log). A run with a filled cache only checks it and takes seconds. The
# source tree (with Go's build cache, ~2.5 GB) is deleted after a successful
# build unless KARO_CLUSTER_KEEP_SRC=1.
#
# The kube-apiserver that tests/platform/setup.sh builds into ~/.cache/karo/bin
# comes from the same source with the same fix; when it is there it is reused
# instead of being built again.
#
# Needs root (apt-get). Progress goes to stderr, full output to build.log.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/env.sh"

CACHE=$KARO_CLUSTER_CACHE
BIN=$KARO_CLUSTER_BIN
IMAGES=$KARO_CLUSTER_IMAGES
SRC=$CACHE/src          # Debian source package, unpacked into $SRC/tree
TREE=$SRC/tree
LOG=$CACHE/build.log
mkdir -p "$BIN" "$IMAGES"
printf '\n##### build.sh started %s\n' "$(date -Is)" >>"$LOG"

log() {
  printf 'cluster/build: [%4ds] %s\n' "$SECONDS" "$*" >&2
  printf '\n=== [%s] %s\n' "$(date +%T)" "$*" >>"$LOG"
}
fail() {
  log "FAILED: $*"
  echo "--- last lines of $LOG:" >&2
  tail -n 40 "$LOG" >&2
  exit 1
}
run() { "$@" >>"$LOG" 2>&1 || fail "$*"; }

[ "$(id -u)" = 0 ] || fail "needs root (apt-get, and the cluster itself runs as root)"

# --- 1. Debian packages -------------------------------------------------------
# Runtime: containerd, runc, CNI plugins (bridge, host-local, portmap, loopback),
# etcd, iptables (kubelet + kube-proxy rules), iproute2, openssl (PKI), curl
# (health checks). Build: Go 1.19 + make + rsync for the Kubernetes build, the
# fixed reflect2, gcc/libc6-dev for the static pause, dpkg-dev for dpkg-source,
# busybox-static for the tools image.
#
# kubectl is built from source rather than taken from Debian's
# `kubernetes-client` package: that package ships /usr/bin/kubectl, which clashes
# with the machine's own `kubectl` package (Google Cloud SDK's), and the build
# below makes a static kubectl from the same tree for almost no extra time.
PKGS=(containerd runc containernetworking-plugins etcd-server iptables iproute2
      openssl curl busybox-static gcc libc6-dev make rsync dpkg-dev golang-go
      golang-github-modern-go-reflect2-dev)
missing=()
for p in "${PKGS[@]}"; do
  [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" = installed ] || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "apt-get install ${missing[*]}"
  run apt-get update
  run env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
else
  log "Debian packages: all present"
fi

# --- 2. Kubernetes binaries ----------------------------------------------------
COMPONENTS=(kube-apiserver kubelet kube-controller-manager kube-scheduler kube-proxy kubectl)

# Reuse the API server of tests/platform/setup.sh (same Debian source, same fix).
shared_apiserver=$KARO_CACHE/bin/kube-apiserver
if [ ! -x "$BIN/kube-apiserver" ] && [ -x "$shared_apiserver" ]; then
  log "reusing $shared_apiserver"
  ln -f "$shared_apiserver" "$BIN/kube-apiserver" 2>/dev/null || cp "$shared_apiserver" "$BIN/kube-apiserver"
fi

what=()
for c in "${COMPONENTS[@]}"; do
  [ -x "$BIN/$c" ] || what+=("cmd/$c")
done

need_source=0
[ "${#what[@]}" -gt 0 ] && need_source=1
[ -x "$IMAGES/pause" ] || need_source=1   # pause.c comes from the source tree

if [ "$need_source" = 1 ] && [ ! -e "$TREE/.karo-prepared" ]; then
  # deb-src entries with the archive and suites of the machine's own `deb` ones
  # (the same file name as tests/platform/setup.sh uses, so never twice).
  if [ -z "$(apt-cache showsrc kubernetes 2>/dev/null)" ]; then
    log "adding deb-src entries"
    sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources \
      >/etc/apt/sources.list.d/karo-deb-src.sources
    run apt-get update
  fi
  log "fetching Debian's kubernetes source package (~35 MB)"
  rm -rf "$SRC"
  mkdir -p "$SRC"
  (cd "$SRC" && apt-get source --download-only kubernetes) >>"$LOG" 2>&1 || fail "apt-get source kubernetes"
  # dpkg-source also applies Debian's patches (kubectl printing, CVE-2021-25743).
  (cd "$SRC" && dpkg-source --no-check -x kubernetes_*.dsc tree) >>"$LOG" 2>&1 || fail "dpkg-source -x"

  # The vendored reflect2 1.0.1 crashes under Go 1.19 (e.g. when encoding custom
  # resources); Debian's 1.0.2 works. Swap the files in place.
  vendored=$TREE/vendor/github.com/modern-go/reflect2
  fixed=/usr/share/gocode/src/github.com/modern-go/reflect2
  rm -f "$vendored"/*.go "$vendored"/*.s
  cp "$fixed"/*.go "$vendored/"
  cp "$fixed"/*.s "$vendored/" 2>/dev/null || true
  # The GOPATH layout debian/rules sets up before its own `make`.
  mkdir -p "$TREE/.go/src/k8s.io"
  ln -sfn ../../.. "$TREE/.go/src/k8s.io/kubernetes"
  touch "$TREE/.karo-prepared"
fi

if [ "${#what[@]}" -gt 0 ]; then
  log "building ${what[*]} (about 10 minutes on a cold cache with 2 cores)"
  # One make call: the binaries share most packages, so they compile once.
  # CGO_ENABLED=0 makes the kubelet static too (the others are static anyway).
  # HOME points into the tree so nothing is written to the real home.
  # A ticker prints a line every minute so a long build shows it is alive.
  mkdir -p "$TREE/.home"
  (while sleep 60; do printf 'cluster/build: [%4ds] ... still compiling\n' "$SECONDS" >&2; done) &
  ticker=$!
  trap 'kill "$ticker" 2>/dev/null || true' EXIT
  rc=0
  (cd "$TREE" && env -u GOFLAGS HOME="$TREE/.home" GOPATH="$TREE/.go" CGO_ENABLED=0 \
      make WHAT="${what[*]}") >>"$LOG" 2>&1 || rc=$?
  kill "$ticker" 2>/dev/null || true
  wait "$ticker" 2>/dev/null || true
  trap - EXIT
  [ "$rc" = 0 ] || fail "make WHAT=\"${what[*]}\" (exit $rc)"
  for w in "${what[@]}"; do
    install -m 0755 "$TREE/_output/bin/${w#cmd/}" "$BIN/"
  done
fi

# Every binary must be static: kubectl goes into a scratch image, and static
# binaries do not care about the host's libraries.
for c in "${COMPONENTS[@]}"; do
  if ldd "$BIN/$c" >/dev/null 2>&1; then fail "$BIN/$c is dynamically linked"; fi
done
log "binaries: $("$BIN/kubelet" --version), kubectl $("$BIN/kubectl" version --client --short 2>/dev/null | sed 's/.*: //')"

# --- 3. Images -------------------------------------------------------------------
if [ ! -x "$IMAGES/pause" ]; then
  log "compiling pause (static)"
  run gcc -Os -Wall -Werror -static -DVERSION=v3.4-karo -o "$IMAGES/pause" "$TREE/build/pause/linux/pause.c"
  run strip "$IMAGES/pause"
fi

# make_image REF ROOTFS OUT CONFIG_JSON
# Writes a single-layer docker-archive (the `docker save` format that
# `ctr images import` reads): manifest.json, the image config, one layer.tar.
# Sorted, with fixed owners and mtimes, so the same inputs give the same image ID.
make_image() {
  local ref=$1 rootfs=$2 out=$3 config=$4 tmp layer_id config_id
  local tar_opts=(--sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner)
  tmp=$(mktemp -d)
  # shellcheck disable=SC2046  # top-level names of the rootfs, no spaces
  tar "${tar_opts[@]}" -C "$rootfs" -cf "$tmp/layer.tar" $(ls -A "$rootfs")
  layer_id=$(sha256sum "$tmp/layer.tar" | cut -d' ' -f1)
  mkdir "$tmp/$layer_id"
  mv "$tmp/layer.tar" "$tmp/$layer_id/layer.tar"
  printf '{"architecture":"amd64","os":"linux","config":%s,"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$config" "$layer_id" >"$tmp/config.json"
  config_id=$(sha256sum "$tmp/config.json" | cut -d' ' -f1)
  mv "$tmp/config.json" "$tmp/$config_id.json"
  printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":["%s/layer.tar"]}]' \
    "$config_id" "$ref" "$layer_id" >"$tmp/manifest.json"
  tar "${tar_opts[@]}" -C "$tmp" -cf "$out.tmp" manifest.json "$config_id.json" "$layer_id"
  mv "$out.tmp" "$out"
  rm -rf "$tmp"
  log "image $ref -> $out ($(du -h "$out" | cut -f1))"
}

if [ ! -s "$IMAGES/pause.tar" ] || [ "$IMAGES/pause" -nt "$IMAGES/pause.tar" ]; then
  rootfs=$(mktemp -d)
  install -m 0755 "$IMAGES/pause" "$rootfs/pause"
  make_image "$KARO_CLUSTER_PAUSE_IMAGE" "$rootfs" "$IMAGES/pause.tar" \
    '{"Entrypoint":["/pause"],"Env":["PATH=/"]}'
  rm -rf "$rootfs"
fi

busybox=$(command -v busybox)   # busybox-static's, statically linked
if [ ! -s "$IMAGES/busybox.tar" ] || [ "$BIN/kubectl" -nt "$IMAGES/busybox.tar" ] \
   || [ "$busybox" -nt "$IMAGES/busybox.tar" ]; then
  ldd "$busybox" >/dev/null 2>&1 && fail "$busybox is not static (busybox-static missing?)"
  rootfs=$(mktemp -d)
  mkdir -p "$rootfs/bin" "$rootfs/etc" "$rootfs/tmp" "$rootfs/root"
  chmod 1777 "$rootfs/tmp"
  chmod 0700 "$rootfs/root"
  install -m 0755 "$busybox" "$rootfs/bin/busybox"
  for applet in $("$busybox" --list); do
    [ "$applet" = busybox ] || ln -s busybox "$rootfs/bin/$applet"
  done
  # kubectl finds the API server and credentials by itself in a pod (in-cluster
  # config: KUBERNETES_SERVICE_HOST + the ServiceAccount token).
  install -m 0755 "$BIN/kubectl" "$rootfs/bin/kubectl"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$rootfs/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\n' >"$rootfs/etc/group"
  make_image "$KARO_CLUSTER_TOOLS_IMAGE" "$rootfs" "$IMAGES/busybox.tar" \
    '{"Cmd":["sh"],"Env":["PATH=/bin","HOME=/root"]}'
  rm -rf "$rootfs"
fi

# --- 4. Tidy up -------------------------------------------------------------------
if [ -d "$SRC" ] && [ "${KARO_CLUSTER_KEEP_SRC:-0}" != 1 ]; then
  log "deleting the source tree ($(du -sh "$SRC" | cut -f1)); KARO_CLUSTER_KEEP_SRC=1 keeps it"
  rm -rf "$SRC"
fi
log "done: $CACHE ($(du -sh "$CACHE" | cut -f1)), log $LOG"
