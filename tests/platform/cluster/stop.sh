#!/usr/bin/env bash
# Stops Karo's test cluster and puts the host back as it was before start.sh:
# processes (by pid file), containers and their shims, mounts under run/, the CNI
# bridge, the address on lo, the kubelet's and kube-proxy's iptables chains, the
# pod cgroups, the sysctls the kubelet and kube-proxy changed, and the fixed
# paths the run created (/var/log/pods, /var/lib/kubelet, ...; see env.sh).
#
# Safe to run any number of times, also with nothing running; start.sh runs it
# first. run/ stays (component logs of the last run); `stop.sh --purge` also
# removes it. Left behind: the (empty) iptables tables once created.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/env.sh"

RUN=$KARO_CLUSTER_RUN
SAVED=$KARO_CLUSTER_SAVED
SOCK=$KARO_CLUSTER_CONTAINERD

# is_ours PID NAME: PID is alive and runs NAME with a path into run/ on its
# command line (pid files can outlive a process and the pid can be reused).
is_ours() {
  local cmdline
  [ -r "/proc/$1/cmdline" ] || return 1
  cmdline=$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null)
  [ "$(basename "${cmdline%% *}")" = "$2" ] && [[ $cmdline == *"$RUN/"* ]]
}

# stop_components NAME...: TERM to each that is running, up to 10 s for all of
# them to exit, then KILL what is left.
stop_components() {
  local name pid pids=()
  for name in "$@"; do
    [ -e "$RUN/$name.pid" ] || continue
    pid=$(cat "$RUN/$name.pid")
    if is_ours "$pid" "$name"; then
      kill "$pid" 2>/dev/null && pids+=("$pid")
    fi
    rm -f "$RUN/$name.pid"
  done
  [ "${#pids[@]}" -gt 0 ] || return 0
  for _ in $(seq 50); do
    kill -0 "${pids[@]}" 2>/dev/null || break   # true while any is alive
    sleep 0.2
  done
  kill -9 "${pids[@]}" 2>/dev/null
}

# 1. The kubelet first, so it restarts nothing; then every container through
#    containerd (shims outlive containerd otherwise).
stop_components kubelet
if [ -S "$SOCK" ] && ctr --address "$SOCK" version >/dev/null 2>&1; then
  ctr_k8s() { ctr --address "$SOCK" -n k8s.io "$@"; }
  for t in $(ctr_k8s tasks ls -q 2>/dev/null); do ctr_k8s tasks kill -s SIGKILL "$t" >/dev/null 2>&1; done
  sleep 1
  for t in $(ctr_k8s tasks ls -q 2>/dev/null); do ctr_k8s tasks rm -f "$t" >/dev/null 2>&1; done
  for c in $(ctr_k8s containers ls -q 2>/dev/null); do ctr_k8s containers rm "$c" >/dev/null 2>&1; done
fi

# 2. The other components: the API server's clients and the API server together,
#    then containerd and etcd (the API server hangs on to a vanished etcd).
stop_components kube-proxy kube-scheduler kube-controller-manager kube-apiserver
stop_components containerd etcd

# 3. Shims whose containerd was ours (their command line names our socket), then
#    anything still inside the pod cgroups (only the kubelet puts processes there).
for p in $(pgrep -f -- "containerd-shim-runc-v2 .*-address $SOCK" 2>/dev/null); do
  kill -9 "$p" 2>/dev/null
done
for procs in /sys/fs/cgroup/*/kubepods; do
  [ -d "$procs" ] || continue
  find "$procs" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -u | while read -r p; do
    kill -9 "$p" 2>/dev/null
  done
done

# 4. Mounts under run/: network namespaces, overlay rootfs, shm, secret/token tmpfs.
grep -o " $RUN/[^ ]*" /proc/self/mounts | sort -r | while read -r m; do
  umount -l "$m" 2>/dev/null
done

# 5. Network: the CNI bridge and the host-local address on lo.
ip link del "$KARO_CLUSTER_BRIDGE" 2>/dev/null
ip addr del "$KARO_CLUSTER_IP/32" dev lo 2>/dev/null

# 6. iptables: the rules and chains the kubelet (KUBE-FIREWALL, KUBE-MARK-*,
#    KUBE-KUBELET-CANARY), kube-proxy (KUBE-SERVICES, KUBE-SVC-*, ...) and the CNI
#    portmap plugin (CNI-*) made, for IPv4 and IPv6. Nothing else is touched.
for ipt in iptables ip6tables; do
  command -v "$ipt" >/dev/null || continue
  for table in filter nat mangle; do
    $ipt -t "$table" -S 2>/dev/null | grep -E '^-A .*(KUBE-|CNI-)' | sed 's/^-A /-D /' |
      while read -r rule; do eval "$ipt -t $table $rule" 2>/dev/null; done
    for chain in $($ipt -t "$table" -S 2>/dev/null | awk '/^-N (KUBE-|CNI-)/ { print $2 }'); do
      $ipt -t "$table" -F "$chain" 2>/dev/null
    done
    for chain in $($ipt -t "$table" -S 2>/dev/null | awk '/^-N (KUBE-|CNI-)/ { print $2 }'); do
      $ipt -t "$table" -X "$chain" 2>/dev/null
    done
  done
done

# 7. The pod cgroups (cgroupfs driver: kubepods/ in every v1 hierarchy), deepest first.
for d in /sys/fs/cgroup/*/kubepods; do
  [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
done

# 8. sysctls and paths saved by start.sh.
if [ -s "$SAVED/sysctl.conf" ]; then
  sysctl -q -p "$SAVED/sysctl.conf" >/dev/null && rm -f "$SAVED/sysctl.conf"
fi
if [ -s "$SAVED/created-paths" ]; then
  while read -r path; do
    # only the known paths, whatever the file says
    case " $KARO_CLUSTER_HOST_PATHS " in *" $path "*) rm -rf "$path" ;; esac
  done <"$SAVED/created-paths"
  rm -f "$SAVED/created-paths"
fi

if [ "${1:-}" = --purge ]; then
  rm -rf "$KARO_CLUSTER_DIR"
fi
echo "cluster/stop: stopped" >&2
