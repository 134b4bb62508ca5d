#!/usr/bin/env bash
# Karo end to end on this machine (`make demo`): a local control plane (etcd and
# kube-apiserver on loopback, as the integration tests start them), Karo itself, an
# example AlertReaction, a real Alertmanager, and an alert fired with amtool. It ends
# by showing the Job Karo created and its rendered command, then stops everything.
# Exit status 0 only if the Job appeared.
#
# Environment: KARO_BIN, a karo binary to use instead of building one (the tests
# set it); KARO_DEMO_KEEP=1 keeps the work dir (logs) after the run.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
REACTION=examples/restart-deployment.yaml
REACTION_NAME=restart-deployment

say() { printf '==> %s\n' "$*"; }

WORK=$(mktemp -d -t karo-demo.XXXXXX)
PIDS=()
cleanup() {
  local rc=$?
  local i
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    kill "${PIDS[$i]}" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  if [ "${KARO_DEMO_KEEP:-}" = 1 ]; then
    echo "demo: logs kept in $WORK" >&2
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() {
  echo "demo: $*" >&2
  for log in "$WORK"/*.log; do
    [ -f "$log" ] || continue
    echo "--- last lines of $(basename "$log")" >&2
    tail -n 15 "$log" >&2
  done
  exit 1
}

# Starts a background process whose output goes to $WORK/<name>.log.
start() {
  local name=$1
  shift
  "$@" >"$WORK/$name.log" 2>&1 &
  PIDS+=("$!")
}

# Polls a command until it succeeds; the timeout only guards against hangs.
wait_for() {
  local what=$1 timeout=$2
  shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || fail "$what: still not there after ${timeout}s"
    sleep 0.2
  done
}

free_port() {
  if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
  else
    local port
    while :; do
      port=$((20000 + RANDOM % 40000))
      if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "$port"
        return
      fi
    done
  fi
}

# --- what it runs on --------------------------------------------------------
say "installing the platform (etcd, kube-apiserver, Alertmanager; cached after the first run)"
PLATFORM=$(bash tests/platform/setup.sh) || fail "tests/platform/setup.sh failed (its log: ${KARO_CACHE:-$HOME/.cache/karo}/setup.log)"
eval "$PLATFORM"
if ! command -v curl >/dev/null 2>&1; then
  apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends curl >/dev/null
fi
if [ -n "${KARO_BIN:-}" ]; then
  KARO=$KARO_BIN
else
  # A debug build: it compiles much faster than --release (LTO), shares its cache
  # with `make test`, and a demo needs no speed.
  say "building karo (cargo build; a few minutes the first time)"
  cargo build --quiet --bin karo
  KARO=$ROOT/target/debug/karo
fi

# --- etcd and kube-apiserver, as tests/support/control_plane.rs starts them ---
say "starting etcd and kube-apiserver on loopback"
ETCD_CLIENT="http://127.0.0.1:$(free_port)"
ETCD_PEER="http://127.0.0.1:$(free_port)"
start etcd env -u ETCDCTL_API "$KARO_ETCD" --name=karo-demo --data-dir="$WORK/etcd" \
  --listen-client-urls="$ETCD_CLIENT" --advertise-client-urls="$ETCD_CLIENT" \
  --listen-peer-urls="$ETCD_PEER" --initial-advertise-peer-urls="$ETCD_PEER" \
  --initial-cluster="karo-demo=$ETCD_PEER" --initial-cluster-state=new
wait_for "etcd health" 60 curl -fsS "$ETCD_CLIENT/health"

TOKEN=$(openssl rand -hex 16)
echo "$TOKEN,admin,admin,system:masters" >"$WORK/tokens.csv"
openssl genrsa -out "$WORK/sa.key" 2048 2>/dev/null
APISERVER_PORT=$(free_port)
start kube-apiserver "$KARO_KUBE_APISERVER" \
  --etcd-servers="$ETCD_CLIENT" --secure-port="$APISERVER_PORT" --bind-address=127.0.0.1 \
  --cert-dir="$WORK/certs" --token-auth-file="$WORK/tokens.csv" --authorization-mode=RBAC \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$WORK/sa.key" --service-account-signing-key-file="$WORK/sa.key" \
  --service-cluster-ip-range=10.0.0.0/24 --disable-admission-plugins=ServiceAccount \
  --insecure-port=0 --feature-gates=TTLAfterFinished=true
wait_for "kube-apiserver /readyz" 120 \
  curl -fsSk -H "Authorization: Bearer $TOKEN" "https://127.0.0.1:$APISERVER_PORT/readyz"

export KUBECONFIG=$WORK/kubeconfig
cat >"$KUBECONFIG" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: karo-demo
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    insecure-skip-tls-verify: true
users:
- name: admin
  user:
    token: $TOKEN
contexts:
- name: karo-demo
  context:
    cluster: karo-demo
    user: admin
    namespace: default
current-context: karo-demo
EOF
k() { kubectl --cache-dir "$WORK/kubectl-cache" --request-timeout=60s "$@"; }

# --- the CRD, Karo and a reaction --------------------------------------------
say "applying the AlertReaction CRD (karo crd | kubectl apply -f -)"
"$KARO" crd | k apply -f - >/dev/null
k wait --for=condition=Established crd/alertreactions.karo.io --timeout=60s >/dev/null
wait_for "the alertreactions resource" 60 k get alertreactions

say "starting karo run"
KARO_PORT=$(free_port)
printf 'logLevel: info\n' >"$WORK/config.yaml"
start karo env NO_COLOR=1 "$KARO" run --config "$WORK/config.yaml" --http-port "$KARO_PORT"
wait_for "karo /readyz" 60 curl -fsS "http://127.0.0.1:$KARO_PORT/readyz"

say "applying $REACTION"
k apply -f "$REACTION" >/dev/null
wait_for "AlertReaction $REACTION_NAME Ready" 60 \
  k wait --for=condition=Ready "alertreaction/$REACTION_NAME" --timeout=5s

# --- Alertmanager and an alert ------------------------------------------------
say "starting Alertmanager, routing every alert to karo"
AM_PORT=$(free_port)
cat >"$WORK/alertmanager.yml" <<EOF
route:
  receiver: karo
  group_by: [alertname]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
- name: karo
  webhook_configs:
  - url: http://127.0.0.1:$KARO_PORT/webhook
    send_resolved: true
EOF
start alertmanager "$KARO_ALERTMANAGER" --config.file="$WORK/alertmanager.yml" \
  --storage.path="$WORK/alertmanager" --web.listen-address="127.0.0.1:$AM_PORT" \
  --cluster.listen-address=
wait_for "alertmanager /-/ready" 60 curl -fsS "http://127.0.0.1:$AM_PORT/-/ready"

say "firing: amtool alert add KubeDeploymentReplicasMismatch deployment=checkout namespace=shop"
"$KARO_AMTOOL" --alertmanager.url="http://127.0.0.1:$AM_PORT" alert add \
  KubeDeploymentReplicasMismatch deployment=checkout namespace=shop severity=warning \
  --annotation=summary="Deployment shop/checkout has not matched the expected number of replicas."

SELECTOR="karo.io/reaction=$REACTION_NAME"
job_exists() { [ -n "$(k get jobs -l "$SELECTOR" -o name)" ]; }
wait_for "the Job of $REACTION_NAME" 60 job_exists
JOB=$(k get jobs -l "$SELECTOR" -o jsonpath='{.items[0].metadata.name}')

say "the Job Karo created"
k get jobs -l "$SELECTOR"
say "its rendered command"
COMMAND=$(k get job "$JOB" -o jsonpath='{range .spec.template.spec.containers[0].command[*]}{@}{" "}{end}{range .spec.template.spec.containers[0].args[*]}{@}{" "}{end}')
echo "${COMMAND% }"
