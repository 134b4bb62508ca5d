#!/usr/bin/env bash
# Cold start of Karo's single-node test cluster: etcd, containerd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kubelet and kube-proxy, all as plain
# processes of this machine (root). Fresh state every time: whatever a previous
# run left behind is stopped and cleaned first (stop.sh), then run/ is rewritten
# (setup.sh). Waits until the node is Ready and the `default` ServiceAccount has
# its token, prints timings and the kubeconfig path. Stop with stop.sh.
#
# Needs build.sh to have run once. Component logs: run/log/<component>.log.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/env.sh"

RUN=$KARO_CLUSTER_RUN
PKI=$KARO_CLUSTER_PKI
LOGS=$KARO_CLUSTER_LOGS
SAVED=$KARO_CLUSTER_SAVED

T0=$EPOCHREALTIME
elapsed() { awk -v a="$T0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1fs", b - a }'; }
say() { printf 'cluster/start: [%s] %s\n' "$(elapsed)" "$*" >&2; }
die() { say "FAILED: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root"
for b in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl; do
  [ -x "$KARO_CLUSTER_BIN/$b" ] || die "$KARO_CLUSTER_BIN/$b missing: run tests/platform/cluster/build.sh first"
done
for t in pause busybox; do
  [ -s "$KARO_CLUSTER_IMAGES/$t.tar" ] || die "$KARO_CLUSTER_IMAGES/$t.tar missing: run build.sh first"
done
for b in etcd containerd runc ctr iptables curl; do
  command -v "$b" >/dev/null || die "$b not found: run build.sh first"
done

# --- Leftovers of an earlier run (crashed, killed, never stopped) ---------------
"$HERE/stop.sh" >/dev/null 2>&1 || true

# --- Host state this run changes, saved for stop.sh -------------------------------
# The kubelet sets vm.overcommit_memory, vm.panic_on_oom, kernel.panic,
# kernel.panic_on_oops and kernel.keys.*; kube-proxy sets route_localnet; the CNI
# bridge plugin (isGateway) turns on ip_forward, which also flips
# conf.all.accept_redirects (restored in this order). Some fixed paths get
# created too (KARO_CLUSTER_HOST_PATHS in env.sh).
mkdir -p "$SAVED"
sysctl -e vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops \
  kernel.keys.root_maxkeys kernel.keys.root_maxbytes net.ipv4.conf.all.route_localnet \
  net.ipv4.ip_forward net.ipv4.conf.all.accept_redirects \
  | sed 's/ = /=/' >"$SAVED/sysctl.conf"
: >"$SAVED/created-paths"
for path in $KARO_CLUSTER_HOST_PATHS; do
  [ -e "$path" ] || echo "$path" >>"$SAVED/created-paths"
done

"$HERE/setup.sh"
ADMIN_TOKEN=$(head -n1 "$PKI/tokens.csv" | cut -d, -f1)

ip addr add "$KARO_CLUSTER_IP/32" dev lo

# launch NAME COMMAND...: in its own session, output to run/log/NAME.log, pid to run/NAME.pid
launch() {
  local name=$1
  shift
  setsid "$@" >"$LOGS/$name.log" 2>&1 </dev/null &
  echo $! >"$RUN/$name.pid"
}
# await WHAT TIMEOUT_S COMMAND...: poll COMMAND every 0.2 s
await() {
  local what=$1 timeout=$2 deadline
  shift 2
  deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      say "timed out waiting for $what; the cluster is left as is for a look, stop it with stop.sh"
      for f in "$LOGS"/*.log; do
        echo "--- tail of $f" >&2
        tail -n 8 "$f" >&2
      done
      exit 1
    fi
    sleep 0.2
  done
  say "$what"
}

# --- etcd and containerd ------------------------------------------------------------
# etcd reads every ETCD* variable as a flag; ETCDCTL_API in the environment
# would be one it does not know.
launch etcd env -u ETCDCTL_API etcd --name karo-test --data-dir "$RUN/etcd" \
  --listen-client-urls "$KARO_CLUSTER_ETCD" --advertise-client-urls "$KARO_CLUSTER_ETCD" \
  --listen-peer-urls "$KARO_CLUSTER_ETCD_PEER" --initial-advertise-peer-urls "$KARO_CLUSTER_ETCD_PEER" \
  --initial-cluster "karo-test=$KARO_CLUSTER_ETCD_PEER" --initial-cluster-state new
launch containerd containerd --config "$RUN/etc/containerd.toml"
await "etcd healthy" 60 curl -sf "$KARO_CLUSTER_ETCD/health"

# --- API server ------------------------------------------------------------------------
# ServiceAccount admission is on (Karo's API-server-only test setup turns it off):
# pods get the token Karo's Jobs use to call the API. TTLAfterFinished is alpha in
# 1.20 and must be on here and in the controller manager.
launch kube-apiserver kube-apiserver \
  --etcd-servers="$KARO_CLUSTER_ETCD" \
  --bind-address="$KARO_CLUSTER_IP" --advertise-address="$KARO_CLUSTER_IP" \
  --secure-port=6443 --insecure-port=0 \
  --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
  --client-ca-file="$PKI/ca.crt" \
  --token-auth-file="$PKI/tokens.csv" \
  --authorization-mode=Node,RBAC \
  --enable-admission-plugins=ServiceAccount,NodeRestriction \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$PKI/sa.key" \
  --service-account-signing-key-file="$PKI/sa.key" \
  --service-cluster-ip-range="$KARO_CLUSTER_SERVICE_CIDR" \
  --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" \
  --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
  --kubelet-preferred-address-types=InternalIP \
  --feature-gates=TTLAfterFinished=true
await "kube-apiserver ready" 120 \
  curl -sf --cacert "$PKI/ca.crt" -H "Authorization: Bearer $ADMIN_TOKEN" "$KARO_CLUSTER_SERVER/readyz"

# --- Controller manager and scheduler (no leader election: one of each) ---------------
launch kube-controller-manager kube-controller-manager \
  --kubeconfig="$PKI/kube-controller-manager.kubeconfig" \
  --authentication-kubeconfig="$PKI/kube-controller-manager.kubeconfig" \
  --authorization-kubeconfig="$PKI/kube-controller-manager.kubeconfig" \
  --bind-address=127.0.0.1 --secure-port=10257 --port=0 \
  --leader-elect=false \
  --use-service-account-credentials=true \
  --service-account-private-key-file="$PKI/sa.key" \
  --root-ca-file="$PKI/ca.crt" \
  --service-cluster-ip-range="$KARO_CLUSTER_SERVICE_CIDR" \
  --feature-gates=TTLAfterFinished=true
launch kube-scheduler kube-scheduler \
  --kubeconfig="$PKI/kube-scheduler.kubeconfig" \
  --authentication-kubeconfig="$PKI/kube-scheduler.kubeconfig" \
  --authorization-kubeconfig="$PKI/kube-scheduler.kubeconfig" \
  --bind-address=127.0.0.1 --secure-port=10259 --port=0 \
  --leader-elect=false

# --- Images: no registry, so import before the kubelet needs the sandbox image ---------
await "containerd up" 60 ctr --address "$KARO_CLUSTER_CONTAINERD" version
for t in pause busybox; do
  ctr --address "$KARO_CLUSTER_CONTAINERD" -n k8s.io images import "$KARO_CLUSTER_IMAGES/$t.tar" \
    >>"$LOGS/images.log" 2>&1 || die "importing $t.tar (see $LOGS/images.log)"
done
say "images imported: $KARO_CLUSTER_PAUSE_IMAGE, $KARO_CLUSTER_TOOLS_IMAGE"

# --- Node: kubelet and kube-proxy ------------------------------------------------------
launch kubelet kubelet \
  --config="$RUN/etc/kubelet.yaml" \
  --kubeconfig="$PKI/kubelet.kubeconfig" \
  --root-dir="$RUN/kubelet" --cert-dir="$RUN/kubelet/pki" \
  --hostname-override="$KARO_CLUSTER_NODE" --node-ip="$KARO_CLUSTER_IP" \
  --container-runtime=remote --container-runtime-endpoint="unix://$KARO_CLUSTER_CONTAINERD" \
  --runtime-request-timeout=5m
# iptables mode: the `kubernetes` Service (10.0.0.1:443), which in-cluster clients
# such as kubectl in a Job use, leads to the API server. The conntrack values of
# 0 keep kube-proxy from changing the host's nf_conntrack sysctls.
launch kube-proxy kube-proxy \
  --kubeconfig="$PKI/kube-proxy.kubeconfig" \
  --hostname-override="$KARO_CLUSTER_NODE" \
  --proxy-mode=iptables --cluster-cidr="$KARO_CLUSTER_POD_CIDR" \
  --healthz-bind-address=127.0.0.1:10256 --metrics-bind-address=127.0.0.1:10249 \
  --conntrack-max-per-core=0 --conntrack-tcp-timeout-established=0 --conntrack-tcp-timeout-close-wait=0

node_ready() {
  [ "$(kubectl get node "$KARO_CLUSTER_NODE" \
        -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]
}
await "node $KARO_CLUSTER_NODE Ready" 180 node_ready

# Pods are refused until their ServiceAccount has a token; wait for the default one.
default_sa_token() {
  [ -n "$(kubectl -n default get serviceaccount default -o jsonpath='{.secrets[0].name}')" ]
}
await "default ServiceAccount token" 60 default_sa_token

say "cluster up"
cat <<EOF
Karo test cluster running (Kubernetes $("$KARO_CLUSTER_BIN/kube-apiserver" --version | sed 's/.* //')), ready after $(elapsed).
  kubeconfig:  $PKI/admin.kubeconfig
  API server:  $KARO_CLUSTER_SERVER (in pods: https://10.0.0.1:443)
  images:      $KARO_CLUSTER_TOOLS_IMAGE, $KARO_CLUSTER_PAUSE_IMAGE
  logs:        $LOGS
  use:         . $HERE/env.sh && kubectl get nodes
  stop:        $HERE/stop.sh
EOF
