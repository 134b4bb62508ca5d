#!/usr/bin/env bash
# Smoke test of a started test cluster (start.sh), covering what Karo relies on:
#
#   1. a Job on the tools image completes and its log reads back;
#   2. a Job with ttlSecondsAfterFinished: 3 is deleted after it completes;
#   3. kubectl inside the tools image, with a ServiceAccount allowed to patch
#      Deployments, runs `kubectl rollout restart` through the `kubernetes` Service.
#
# Runs in a fresh namespace (deleted at the end when all passed, kept for a look
# otherwise). Exits non-zero on the first failure.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/env.sh"

T0=$EPOCHREALTIME
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1fs", b - a }'; }
say() { printf 'cluster/smoke: [%s] %s\n' "$(since "$T0")" "$*" >&2; }
NS=karo-smoke-$(date +%s)
k() { kubectl -n "$NS" "$@"; }
fail() {
  say "FAILED: $*"
  {
    k get jobs,pods,deployments -o wide
    k get events --sort-by=.lastTimestamp | tail -n 20
  } >&2 2>&1 || true
  say "namespace $NS kept for a look"
  exit 1
}

[ "$(kubectl get node "$KARO_CLUSTER_NODE" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ] ||
  { say "no Ready node $KARO_CLUSTER_NODE: is the cluster started (start.sh)?"; exit 1; }

kubectl create namespace "$NS" >/dev/null
# Pods are refused until the namespace's default ServiceAccount has its token.
for _ in $(seq 150); do
  [ -n "$(k get serviceaccount default -o jsonpath='{.secrets[0].name}' 2>/dev/null)" ] && break
  sleep 0.2
done

# job_condition JOB: Complete or Failed once the Job has finished, else nothing
job_condition() {
  local types
  types=$(k get job "$1" -o jsonpath='{range .status.conditions[?(@.status=="True")]}{.type} {end}' 2>/dev/null) || true
  case " $types" in
    *" Complete "*) echo Complete ;;
    *" Failed "*) echo Failed ;;
  esac
}
# await_complete JOB TIMEOUT_S
await_complete() {
  local deadline=$((SECONDS + $2)) c
  while [ "$SECONDS" -lt "$deadline" ]; do
    c=$(job_condition "$1")
    [ "$c" = Complete ] && return 0
    [ "$c" = Failed ] && fail "Job $1 failed: $(k logs "job/$1" 2>&1 | tail -n 5)"
    sleep 0.2
  done
  fail "Job $1 not Complete after $2 s"
}

# job NAME COMMAND [SPEC_LINE]: a Job of one container on the tools image.
job() {
  printf -- '---\napiVersion: batch/v1\nkind: Job\nmetadata: {name: %s}\nspec:\n  backoffLimit: 0\n' "$1"
  [ -n "${3:-}" ] && printf '  %s\n' "$3"
  printf '  template:\n    spec:\n      restartPolicy: Never\n      containers:\n'
  printf '      - name: main\n        image: %s\n        command: ["sh", "-c", "%s"]\n' \
    "$KARO_CLUSTER_TOOLS_IMAGE" "$2"
}

# All three start at once; each check then waits for its own.
{
  job hello "echo hello from karo"
  job short-lived "echo gone soon" "ttlSecondsAfterFinished: 3"
  cat <<EOF
---
# What a Karo action Job does: restart a Deployment with its own ServiceAccount.
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: $KARO_CLUSTER_TOOLS_IMAGE
        command: ["sleep", "3600"]
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: restarter}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: restart-deployments}
rules:
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, patch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: restarter}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: restart-deployments}
subjects: [{kind: ServiceAccount, name: restarter}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: restart-web}
spec:
  backoffLimit: 0
  template:
    spec:
      serviceAccountName: restarter
      restartPolicy: Never
      containers:
      - name: main
        image: $KARO_CLUSTER_TOOLS_IMAGE
        command: ["sh", "-c", "kubectl version --short && kubectl rollout restart deployment/web"]
EOF
} | k apply -f - >/dev/null

# 2. short-lived first, since it does not stay long: Complete, then removed by
#    the TTL-after-finished controller.
done_at=
deadline=$((SECONDS + 120))
while :; do
  if ! status=$(k get job short-lived -o jsonpath='{.status.completionTime},{.status.failed}' 2>&1); then
    case "$status" in
      *NotFound* | *"not found"*) break ;;                    # deleted: done
      *) fail "kubectl get job short-lived: $status" ;;
    esac
  fi
  [ -z "${status#*,}" ] || fail "Job short-lived failed"
  if [ -n "${status%,*}" ] && [ -z "$done_at" ]; then done_at=$EPOCHREALTIME; fi
  [ "$SECONDS" -lt "$deadline" ] || fail "Job short-lived still there after 120 s"
  sleep 0.2
done
if [ -n "$done_at" ]; then
  say "ok: Job short-lived Complete, deleted $(since "$done_at") later (ttlSecondsAfterFinished: 3)"
else
  say "ok: Job short-lived completed and was deleted between two polls (ttlSecondsAfterFinished: 3)"
fi

# 1. hello
await_complete hello 120
log=$(k logs job/hello)
[ "$log" = "hello from karo" ] || fail "Job hello logged '$log'"
took=$(k get job hello -o jsonpath='{.metadata.creationTimestamp} {.status.completionTime}' |
  { read -r a b; echo $(($(date -d "$b" +%s) - $(date -d "$a" +%s))); })
say "ok: Job hello Complete ${took}s after create (API timestamps), log '$log'"

# 3. kubectl in the tools image
await_complete restart-web 120
restarted=$(k get deployment web -o jsonpath='{.spec.template.metadata.annotations.kubectl\.kubernetes\.io/restartedAt}')
[ -n "$restarted" ] || fail "Deployment web has no restartedAt annotation"
say "ok: in-pod kubectl restarted Deployment web (restartedAt $restarted); its log:"
k logs job/restart-web | sed 's/^/    /' >&2

kubectl delete namespace "$NS" --wait=false >/dev/null
say "all passed"
