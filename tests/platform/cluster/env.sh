# shellcheck shell=bash disable=SC2034  # sourced: the variables are used by the other scripts
# Settings shared by the scripts of Karo's single-node test cluster
# (tests/platform/cluster). Sourced by every script; source it yourself to use a
# started cluster:
#
#   . tests/platform/cluster/env.sh && kubectl get nodes
#
# One cluster per machine: the ports (6443, 10248-10259, 23790/23800), the
# host-local IP, the bridge name and /var/log/pods are fixed.

# Build cache (binaries, image tarballs, build log). Survives runs; build.sh fills it.
KARO_CACHE=${KARO_CACHE:-$HOME/.cache/karo}
KARO_CLUSTER_CACHE=$KARO_CACHE/cluster
KARO_CLUSTER_BIN=$KARO_CLUSTER_CACHE/bin
KARO_CLUSTER_IMAGES=$KARO_CLUSTER_CACHE/images

# Run state. start.sh wipes and recreates run/; stop.sh leaves it (component logs
# of the last run stay in run/log). Host settings to restore are kept beside it.
KARO_CLUSTER_DIR=${KARO_CLUSTER_DIR:-/var/tmp/karo-cluster}
KARO_CLUSTER_RUN=$KARO_CLUSTER_DIR/run
KARO_CLUSTER_PKI=$KARO_CLUSTER_RUN/pki
KARO_CLUSTER_LOGS=$KARO_CLUSTER_RUN/log
KARO_CLUSTER_SAVED=$KARO_CLUSTER_DIR/host-saved
# Fixed paths outside run/ that the components create whatever their flags say:
# the kubelet's /var/log/pods, /var/log/containers and device-plugin socket dir
# (/var/lib/kubelet/device-plugins), libcni's result cache (/var/lib/cni) and the
# containerd shims' socket dir (/run/containerd/s), libmount's /run/mount.
# stop.sh removes those that did not exist before start.sh.
KARO_CLUSTER_HOST_PATHS="/var/log/pods /var/log/containers /var/lib/kubelet /var/lib/cni /run/containerd /run/mount"

# Network. The kubelet refuses a loopback node IP and pods cannot reach 127.0.0.1,
# so the API server and the kubelet listen on a host-local /32 added to `lo`:
# pods reach it through the gateway of the CNI bridge.
KARO_CLUSTER_IP=172.30.255.1
KARO_CLUSTER_SERVER=https://$KARO_CLUSTER_IP:6443
KARO_CLUSTER_NODE=karo-node
KARO_CLUSTER_BRIDGE=karocl0
KARO_CLUSTER_SERVICE_CIDR=10.0.0.0/24   # the `kubernetes` Service is 10.0.0.1:443
KARO_CLUSTER_POD_CIDR=10.244.0.0/24
KARO_CLUSTER_ETCD=http://127.0.0.1:23790
KARO_CLUSTER_ETCD_PEER=http://127.0.0.1:23800
KARO_CLUSTER_CONTAINERD=$KARO_CLUSTER_RUN/containerd/containerd.sock

# Images built locally by build.sh (no registry is reachable) and imported into
# containerd by start.sh. Non-`latest` tags, so the default pull policy is
# IfNotPresent and nothing is ever pulled.
KARO_CLUSTER_TOOLS_IMAGE=local/busybox:1   # busybox-static + static kubectl
KARO_CLUSTER_PAUSE_IMAGE=local/pause:1     # Kubernetes' own pause.c, static

export KUBECONFIG=$KARO_CLUSTER_PKI/admin.kubeconfig
# The cluster's own kubectl (1.20, built with the rest) comes first in PATH.
case ":$PATH:" in
  *":$KARO_CLUSTER_BIN:"*) ;;
  *) export PATH=$KARO_CLUSTER_BIN:$PATH ;;
esac
