#!/usr/bin/env bash
# Writes the configuration of one cluster run into run/ (wiped first): PKI made
# with openssl, static tokens, kubeconfigs, and the containerd, CNI and kubelet
# configs. Called by start.sh; nothing here touches the host outside run/.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/env.sh"

RUN=$KARO_CLUSTER_RUN
PKI=$KARO_CLUSTER_PKI
rm -rf "$RUN"
mkdir -p "$PKI" "$KARO_CLUSTER_LOGS" "$RUN/etc/cni" "$RUN/kubelet" "$RUN/containerd"
chmod 0700 "$PKI"

# --- PKI ----------------------------------------------------------------------
# One CA signs the API server's serving certificate and the client certificate
# the API server shows the kubelet (for logs/exec). Users and components
# authenticate with static tokens (below), which keeps the PKI small. The kubelet
# makes its own self-signed serving certificate in its cert dir.
cd "$PKI"
ssl() { openssl "$@" 2>>"$KARO_CLUSTER_LOGS/openssl.log"; }
ssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 -subj "/CN=karo-test-cluster-ca"

# issue NAME SUBJECT EXTENSIONS: a key and a certificate signed by the CA
issue() {
  ssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2"
  printf '%s\n' "$3" >"$1.ext"
  ssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
    -extfile "$1.ext" -out "$1.crt"
  rm -f "$1.csr" "$1.ext"
}
# Reachable as the node IP, as the `kubernetes` Service (10.0.0.1) and by name.
issue apiserver "/CN=kube-apiserver" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,IP:127.0.0.1,IP:10.0.0.1,IP:$KARO_CLUSTER_IP"
issue apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
# Signs ServiceAccount tokens (kube-controller-manager) and verifies them (API server).
ssl genrsa -out sa.key 2048

# --- Static tokens: token,user,uid,"groups" ---------------------------------------
token() { od -An -N16 -tx1 /dev/urandom | tr -d ' \n'; }
ADMIN=$(token) KCM=$(token) SCHEDULER=$(token) KUBELET=$(token) PROXY=$(token)
cat >tokens.csv <<EOF
$ADMIN,karo-admin,karo-admin,system:masters
$KCM,system:kube-controller-manager,kube-controller-manager
$SCHEDULER,system:kube-scheduler,kube-scheduler
$KUBELET,system:node:$KARO_CLUSTER_NODE,kubelet,system:nodes
$PROXY,system:kube-proxy,kube-proxy
EOF
chmod 0600 tokens.csv

# kubeconfig FILE USER TOKEN
kubeconfig() {
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: karo-test
  cluster:
    server: $KARO_CLUSTER_SERVER
    certificate-authority: $PKI/ca.crt
users:
- name: $2
  user:
    token: $3
contexts:
- name: karo-test
  context:
    cluster: karo-test
    user: $2
    namespace: default
current-context: karo-test
EOF
  chmod 0600 "$1"
}
kubeconfig admin.kubeconfig karo-admin "$ADMIN"
kubeconfig kube-controller-manager.kubeconfig system:kube-controller-manager "$KCM"
kubeconfig kube-scheduler.kubeconfig system:kube-scheduler "$SCHEDULER"
kubeconfig kubelet.kubeconfig "system:node:$KARO_CLUSTER_NODE" "$KUBELET"
kubeconfig kube-proxy.kubeconfig system:kube-proxy "$PROXY"

# --- containerd ------------------------------------------------------------------
# All of containerd's state lives under run/, on its own socket, so it never meets
# a system containerd.
cat >"$RUN/etc/containerd.toml" <<EOF
version = 2
root = "$RUN/containerd/root"
state = "$RUN/containerd/state"

[grpc]
  address = "$KARO_CLUSTER_CONTAINERD"

[ttrpc]
  address = "$KARO_CLUSTER_CONTAINERD.ttrpc"

# Default /opt/containerd: keep it under run/ as well.
[plugins."io.containerd.internal.v1.opt"]
  path = "$RUN/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  # Imported by start.sh; never pulled (no registry).
  sandbox_image = "docker.io/$KARO_CLUSTER_PAUSE_IMAGE"
  netns_mounts_under_state_dir = true
  # The test VMs lack CAP_SYS_RESOURCE in the bounding set, so runc cannot give
  # a container a negative oom_score_adj (pause asks for -998): sandboxes fail
  # with "can't get final child's PID from pipe: EOF". Restricting the score to
  # no lower than containerd's own avoids that.
  restrict_oom_score_adj = true

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$RUN/containerd/runc"

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$RUN/etc/cni"
EOF

# --- CNI: one bridge, host-local addresses, gateway = the host ---------------------
# No masquerading: pods reach the host (API server on $KARO_CLUSTER_IP, through
# the kube-proxy rules for the `kubernetes` Service) and each other, nothing else.
cat >"$RUN/etc/cni/10-karo-test.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "karo-test",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$KARO_CLUSTER_BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$RUN/cni-ipam",
        "ranges": [[{"subnet": "$KARO_CLUSTER_POD_CIDR"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF

# No cluster DNS: pods get this placeholder (their DNS policy falls back to
# Default, event MissingClusterDNS). In-cluster clients use KUBERNETES_SERVICE_HOST.
printf 'nameserver 127.0.0.53\n' >"$RUN/etc/resolv.conf"

# --- kubelet -------------------------------------------------------------------------
cat >"$RUN/etc/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $KARO_CLUSTER_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: "$PKI/ca.crt"}
authorization: {mode: Webhook}
cgroupDriver: cgroupfs
failSwapOn: false
resolvConf: "$RUN/etc/resolv.conf"
clusterDomain: cluster.local
# Report Ready ~4 s after registering instead of after the default 10 s.
nodeStatusUpdateFrequency: 4s
# Pods see ConfigMap/Secret volume updates within ~10-15 s (default 1m: up to ~2 min).
syncFrequency: 10s
# Imported images cannot be pulled again: never garbage-collect them.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
# A shared test disk may be fuller than the default 10-15 % free: evict only
# when it is really out of space.
evictionHard:
  memory.available: "100Mi"
  nodefs.available: "1%"
  nodefs.inodesFree: "1%"
  imagefs.available: "1%"
# Alpha in 1.20; Karo's Jobs use ttlSecondsAfterFinished (also on in the API
# server and the controller manager).
featureGates:
  TTLAfterFinished: true
EOF
echo "cluster/setup: configuration written to $RUN" >&2
