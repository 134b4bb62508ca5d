#!/usr/bin/env bash
# Karo end to end on this machine (`make demo`), on a real single-node Kubernetes
# cluster (tests/platform/cluster): Karo installed by its Helm chart from its own
# image (`make image`), the restart-deployment example with its RBAC, a Deployment
# to restart, a real Alertmanager routing to Karo's Service, and an alert fired with
# amtool. It ends by showing the Job Karo created, its pod's log (the remediation's
# output) and its effect (the Deployment's new ReplicaSet). Exit status 0 only if
# all of that happened.
#
# The first run builds the cluster's binaries (about 10 to 20 minutes on 2 cores,
# cached in ~/.cache/karo) and Karo's release image. A cluster that is already
# running (make test, or tests/platform/cluster/start.sh) is used and left running;
# otherwise the demo starts one and stops it at the end.
#
# Environment: KARO_DEMO_KEEP=1 keeps the demo's namespace and work dir;
# KARO_DEMO_IMAGE=<reference> uses the image already in target/karo-image.tar
# (built by `make image` with that reference) instead of building it.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
CLUSTER=tests/platform/cluster
REACTION=examples/restart-deployment.yaml
REACTION_NAME=restart-deployment

say() { printf '==> %s\n' "$*"; }

WORK=$(mktemp -d -t karo-demo.XXXXXX)
AM_PID=
STARTED_CLUSTER=0
NS=
cleanup() {
  local rc=$?
  [ -n "$AM_PID" ] && { kill "$AM_PID" 2>/dev/null; wait "$AM_PID" 2>/dev/null; } || true
  if [ "${KARO_DEMO_KEEP:-}" = 1 ]; then
    echo "demo: namespace $NS and work dir $WORK kept" >&2
  else
    if [ -n "$NS" ] && [ "$STARTED_CLUSTER" = 0 ]; then
      k delete namespace "$NS" --wait=false >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
  fi
  if [ "$STARTED_CLUSTER" = 1 ]; then
    say "stopping the cluster"
    bash "$CLUSTER/stop.sh" >&2 || true
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

# Polls a command until it succeeds; the timeout only guards against hangs.
wait_for() {
  local what=$1 timeout=$2
  shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || fail "$what: still not there after ${timeout}s"
    sleep 0.5
  done
}

# --- the platform: Alertmanager, Helm, the cluster, Karo's image -------------
say "installing Alertmanager and Helm (cached after the first run)"
PLATFORM=$(bash tests/platform/setup.sh) || fail "tests/platform/setup.sh failed (its log: ${KARO_CACHE:-$HOME/.cache/karo}/setup.log)"
eval "$PLATFORM"
if EXPORTS=$(bash "$CLUSTER/exports.sh" 2>/dev/null); then
  say "using the running cluster"
else
  say "building the cluster (cached after the first run) and starting it"
  bash "$CLUSTER/build.sh" || fail "$CLUSTER/build.sh failed"
  STARTED_CLUSTER=1
  bash "$CLUSTER/start.sh" >"$WORK/cluster.log" 2>&1 || fail "$CLUSTER/start.sh failed"
  EXPORTS=$(bash "$CLUSTER/exports.sh")
fi
eval "$EXPORTS"
TOOLS_IMAGE=$(bash -c ". $CLUSTER/env.sh && echo \$KARO_CLUSTER_TOOLS_IMAGE")
k() { "$KARO_CLUSTER_KUBECTL" --kubeconfig "$KARO_CLUSTER_KUBECONFIG" "$@"; }
helm() {
  "$KARO_HELM3" --kubeconfig "$KARO_CLUSTER_KUBECONFIG" "$@" \
    </dev/null 2>&1
}
export HELM_CACHE_HOME=$WORK/helm/cache HELM_CONFIG_HOME=$WORK/helm/config HELM_DATA_HOME=$WORK/helm/data

if [ -n "${KARO_DEMO_IMAGE:-}" ]; then
  IMAGE=$KARO_DEMO_IMAGE
else
  say "building Karo's image (make image)"
  IMAGE=$(make --no-print-directory image 2>"$WORK/image.log" | tail -n 1) || fail "make image failed"
fi
ctr --address "$KARO_CLUSTER_CONTAINERD" -n k8s.io images import target/karo-image.tar >/dev/null ||
  fail "importing $IMAGE into containerd"
echo "$IMAGE"

# --- Karo, by its chart --------------------------------------------------------
NS=karo-demo-$(date +%s)
k create namespace "$NS" >/dev/null
wait_for "the default ServiceAccount's token" 60 \
  sh -c "[ -n \"\$(\"$KARO_CLUSTER_KUBECTL\" --kubeconfig \"$KARO_CLUSTER_KUBECONFIG\" -n $NS get serviceaccount default -o jsonpath='{.secrets[0].name}')\" ]"
say "helm install karo charts/karo -n $NS (image $IMAGE)"
helm install karo charts/karo -n "$NS" --set "image.repository=${IMAGE%:*}" \
  --set "image.tag=${IMAGE##*:}" --set image.pullPolicy=Never \
  --set "config.namespaces[0]=$NS" --wait --timeout 3m >"$WORK/helm.log" || fail "helm install failed"
k -n "$NS" get pods -l app.kubernetes.io/name=karo
SERVICE_IP=$(k -n "$NS" get service karo -o jsonpath='{.spec.clusterIP}')
wait_for "Karo's /readyz through its Service" 60 curl -fsS "http://$SERVICE_IP:8080/readyz"

# --- what the remediation acts on ----------------------------------------------
say "a Deployment to restart (checkout), and the example's RBAC"
k -n "$NS" create deployment checkout --image="$TOOLS_IMAGE" -- sleep 3600 >/dev/null
wait_for "checkout's first ReplicaSet" 60 sh -c \
  "[ \"\$(\"$KARO_CLUSTER_KUBECTL\" --kubeconfig \"$KARO_CLUSTER_KUBECONFIG\" -n $NS get replicasets -l app=checkout -o name | wc -l)\" = 1 ]"
k -n "$NS" apply -f examples/restart-deployment-rbac.yaml >/dev/null
say "applying $REACTION (its image: the cluster's kubectl image)"
sed "s#bitnami/kubectl:1.30#$TOOLS_IMAGE#" "$REACTION" | k -n "$NS" apply -f - >/dev/null
wait_for "AlertReaction $REACTION_NAME Ready" 60 \
  k -n "$NS" wait --for=condition=Ready "alertreaction/$REACTION_NAME" --timeout=5s

# --- Alertmanager and an alert ------------------------------------------------
say "starting Alertmanager, routing every alert to Karo's Service"
AM_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
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
  - url: http://$SERVICE_IP:8080/webhook
    send_resolved: true
EOF
"$KARO_ALERTMANAGER" --config.file="$WORK/alertmanager.yml" \
  --storage.path="$WORK/alertmanager" --web.listen-address="127.0.0.1:$AM_PORT" \
  --cluster.listen-address= >"$WORK/alertmanager.log" 2>&1 &
AM_PID=$!
wait_for "alertmanager /-/ready" 60 curl -fsS "http://127.0.0.1:$AM_PORT/-/ready"

say "firing: amtool alert add KubeDeploymentReplicasMismatch deployment=checkout namespace=$NS"
"$KARO_AMTOOL" --alertmanager.url="http://127.0.0.1:$AM_PORT" alert add \
  KubeDeploymentReplicasMismatch deployment=checkout "namespace=$NS" severity=warning \
  --annotation=summary="Deployment $NS/checkout has not matched the expected number of replicas."

# --- what happened --------------------------------------------------------------
SELECTOR="karo.io/reaction=$REACTION_NAME"
job_done() {
  [ "$(k -n "$NS" get jobs -l "$SELECTOR" -o jsonpath='{.items[0].status.succeeded}')" = 1 ]
}
wait_for "the Job of $REACTION_NAME to complete" 180 job_done
JOB=$(k -n "$NS" get jobs -l "$SELECTOR" -o jsonpath='{.items[0].metadata.name}')
run_done() {
  [ "$(k -n "$NS" get alertreactionruns -l "$SELECTOR" -o jsonpath='{.items[0].status.phase}')" = Succeeded ]
}
wait_for "the Run of $REACTION_NAME to succeed" 120 run_done

say "the Run: Karo's record of this reaction to the alert"
k -n "$NS" get alertreactionruns -l "$SELECTOR"

say "the Job Karo created"
k -n "$NS" get jobs -l "$SELECTOR"
say "its rendered command"
COMMAND=$(k -n "$NS" get job "$JOB" -o jsonpath='{range .spec.template.spec.containers[0].command[*]}{@}{" "}{end}{range .spec.template.spec.containers[0].args[*]}{@}{" "}{end}')
echo "${COMMAND% }"
say "its pod's log"
k -n "$NS" logs "job/$JOB"
say "its effect: checkout rolled out a new ReplicaSet"
wait_for "checkout's second ReplicaSet" 60 sh -c \
  "[ \"\$(\"$KARO_CLUSTER_KUBECTL\" --kubeconfig \"$KARO_CLUSTER_KUBECONFIG\" -n $NS get replicasets -l app=checkout -o name | wc -l)\" = 2 ]"
k -n "$NS" get replicasets -l app=checkout
