#!/usr/bin/env bash
# Prints shell assignments for a started test cluster (start.sh), for the Rust
# tests (tests/support/cluster.rs) and the Makefile:
#
#   eval "$(bash tests/platform/cluster/exports.sh)"
#
#   KARO_CLUSTER_KUBECONFIG   admin kubeconfig
#   KARO_CLUSTER_CONTAINERD   the node's containerd socket (ctr --address ...)
#   KARO_CLUSTER_KUBECTL      the cluster's own kubectl (1.20, static)
#
# Fails, printing nothing, when the cluster is not running.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/env.sh"

if [ ! -s "$KARO_CLUSTER_PKI/admin.kubeconfig" ] || [ ! -S "$KARO_CLUSTER_CONTAINERD" ] ||
   [ ! -e "$KARO_CLUSTER_RUN/kubelet.pid" ]; then
  echo "cluster/exports: the test cluster is not running (tests/platform/cluster/start.sh)" >&2
  exit 1
fi
cat <<VARS
export KARO_CLUSTER_KUBECONFIG=$KARO_CLUSTER_PKI/admin.kubeconfig
export KARO_CLUSTER_CONTAINERD=$KARO_CLUSTER_CONTAINERD
export KARO_CLUSTER_KUBECTL=$KARO_CLUSTER_BIN/kubectl
VARS
