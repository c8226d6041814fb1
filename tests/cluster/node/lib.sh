# The test node's machine-level parts, sourced by tests/cluster/up and down: the traffic
# guard, the machine snapshot and its restoration, and the node's processes. Everything
# the node changes outside DIR is recorded in $NODE_RECORD first and put back from it.

NODE_NAME=sluice-node
# A /32 on lo: the API server must advertise a non-loopback address (Endpoints refuse
# 127.0.0.1), and this kernel has no dummy links.
NODE_IP=10.89.0.1
POD_CIDR=10.88.0.0/16
POD_GW=10.88.0.1
SERVICE_CIDR=10.0.0.0/24
DNS_IP=10.0.0.10
# One node per machine: its record (what it changed, where its DIR is) lives here.
NODE_RECORD=/run/sluice-node
# A directory made atomically, holding the PID of the `up` that made it: unlike a flock, no
# process the bring-up starts can inherit it, and one whose maker died is taken over.
NODE_LOCK=/run/sluice-node.lock
NODE_LAST_DOWN=/run/sluice-node.last-down
# Host directories kubelet, containerd and the CNI plugins create outside DIR.
NODE_HOST_DIRS=(/var/lib/kubelet /var/log/containers /var/log/pods /usr/libexec/kubernetes /var/lib/cni /run/containerd /run/netns /etc/cni)
# Kernel settings the node's parts change (kubelet, the bridge plugin, kube-proxy).
NODE_SYSCTL_PATTERN='^(vm\.overcommit_memory|kernel\.panic|kernel\.panic_on_oops|net\.ipv4\.ip_forward|net\.ipv6\.conf\.all\.forwarding|net\.bridge\..*|net\.ipv4\.conf\.(all|default|lo|eth0)\..*|net\.netfilter\.nf_conntrack_(max|tcp_timeout_established|tcp_timeout_close_wait|tcp_be_liberal))$'

node_log() { echo "tests/cluster/node: $*" >&2; }

node_lock_take() { # pid; waits (bounded) while another live up holds it
  local i holder
  for i in $(seq 1 4500); do
    if mkdir "$NODE_LOCK" 2>/dev/null; then
      echo "$1 $(awk '{print $22}' "/proc/$1/stat")" >"$NODE_LOCK/holder"
      return 0
    fi
    read -r holder start <"$NODE_LOCK/holder" 2>/dev/null || holder=""
    if [[ -n $holder && $(awk '{print $22}' "/proc/$holder/stat" 2>/dev/null) != "${start:-}" ]] || \
      [[ -z $holder && $(($(date +%s) - $(stat -c %Y "$NODE_LOCK" 2>/dev/null || date +%s))) -gt 10 ]]; then
      node_log "taking over the lock of a bring-up that ended without releasing it"
      rm -rf "$NODE_LOCK"
      continue
    fi
    sleep 0.2
  done
  return 1
}

node_lock_release() { # pid
  local holder
  read -r holder _ <"$NODE_LOCK/holder" 2>/dev/null || return 0
  [[ $holder == "$1" ]] && rm -rf "$NODE_LOCK"
}

# ---- the machine's state, before and after ---------------------------------------------

# The rules and user-defined chains of every table, each line prefixed by its table: what
# decides where a packet goes. (Counters differ between two saves of the same rules, and an
# emptied table keeps its built-in ACCEPT chains, which change nothing.)
node_iptables_state() { # iptables|ip6tables
  "$1-save" 2>/dev/null | awk '/^\*/ { t = substr($0, 2) } /^-A / || /^:[^ ]+ - / { sub(/ \[[0-9]+:[0-9]+\]$/, ""); print t ": " $0 }'
}

# What a node may leave behind, one line per fact; a clean teardown gives the same text as
# before the node started.
node_machine_state() {
  echo "links: $(ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 | sort | tr '\n' ' ')"
  echo "lo: $(ip -o -4 addr show dev lo | awk '{print $4}' | sort | tr '\n' ' ')"
  echo "netns: $(ls /run/netns 2>/dev/null | tr '\n' ' ')"
  echo "host dirs: $(for d in "${NODE_HOST_DIRS[@]}"; do [[ -e $d ]] && printf '%s ' "$d"; done)"
  echo "cgroups: $(ls -d /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/*/k8s.io /sys/fs/cgroup/kubepods 2>/dev/null | tr '\n' ' ')"
  echo "mounts: $(awk '$2 ~ /^\/run\/netns|^\/var\/lib\/kubelet|containerd|kubelet/ {print $2}' /proc/self/mounts | sort | tr '\n' ' ')"
  sysctl -a 2>/dev/null | tr -d ' ' | awk -F= -v pat="$NODE_SYSCTL_PATTERN" '$1 ~ pat' | sort | sed 's/^/sysctl: /'
  node_iptables_state iptables | sed 's/^/ipv4: /'
  node_iptables_state ip6tables | sed 's/^/ipv6: /'
}

node_snapshot() { # record the machine before anything changes it
  mkdir -p "$NODE_RECORD"
  node_machine_state >"$NODE_RECORD/machine.before"
  sysctl -a 2>/dev/null | tr -d ' ' | awk -F= -v pat="$NODE_SYSCTL_PATTERN" '$1 ~ pat' >"$NODE_RECORD/sysctl.before"
  iptables-save >"$NODE_RECORD/iptables.before" 2>/dev/null
  ip6tables-save >"$NODE_RECORD/ip6tables.before" 2>/dev/null
  : >"$NODE_RECORD/host-dirs.created"
  local d
  for d in "${NODE_HOST_DIRS[@]}"; do [[ -e $d ]] || echo "$d" >>"$NODE_RECORD/host-dirs.created"; done
}

# ---- the guard: pod traffic never leaves this machine ----------------------------------

# In mangle, after kube-proxy's DNAT has chosen the real destination (a filter OUTPUT rule
# would see the ClusterIP's route and break every Service). Goes in first, out last.
node_guard_install() {
  local out_dev r
  out_dev=$(ip route show default | awk '{for (i = 1; i < NF; i++) if ($i == "dev") print $(i + 1)}' | sort -u)
  echo "$out_dev" >"$NODE_RECORD/guard.devices"
  iptables -t mangle -N SLUICE-GUARD-POST
  iptables -t mangle -N SLUICE-GUARD-FWD
  iptables -N SLUICE-GUARD-IN
  local dev
  for dev in $out_dev; do
    for r in "-d $SERVICE_CIDR" "-d $POD_CIDR" "-s $POD_CIDR" "-d $NODE_IP/32" "-s $NODE_IP/32"; do
      iptables -t mangle -A SLUICE-GUARD-POST -o "$dev" $r -j DROP
    done
    iptables -t mangle -A SLUICE-GUARD-FWD -o "$dev" -j DROP
    # The API server and kubelet bind the node's address only; this is for belt and braces.
    iptables -A SLUICE-GUARD-IN -i "$dev" -p tcp -m multiport --dports 10248:10259 -j DROP
    iptables -A SLUICE-GUARD-IN -i "$dev" -d "$NODE_IP/32" -j DROP
  done
  iptables -t mangle -I POSTROUTING 1 -j SLUICE-GUARD-POST
  iptables -t mangle -I FORWARD 1 -j SLUICE-GUARD-FWD
  iptables -I INPUT 1 -j SLUICE-GUARD-IN
}

node_guard_remove() {
  while iptables -t mangle -D POSTROUTING -j SLUICE-GUARD-POST 2>/dev/null; do :; done
  while iptables -t mangle -D FORWARD -j SLUICE-GUARD-FWD 2>/dev/null; do :; done
  while iptables -D INPUT -j SLUICE-GUARD-IN 2>/dev/null; do :; done
  local t c
  for t in "mangle SLUICE-GUARD-POST" "mangle SLUICE-GUARD-FWD" "filter SLUICE-GUARD-IN"; do
    read -r t c <<<"$t"
    iptables -t "$t" -F "$c" 2>/dev/null; iptables -t "$t" -X "$c" 2>/dev/null
  done
}

# ---- teardown ---------------------------------------------------------------------------

node_alive() { [[ -e /proc/$1 ]] && [[ $(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) != Z ]]; }

# Every process whose command line names DIR (the node's components, containerd and its
# shims all take paths in DIR), then every process left in the pods' cgroups.
node_kill_all() { # dir
  local pid pids=() i spare=" " p=$BASHPID
  # Never this process or the ones that called it (up's error path runs down).
  while [[ -n $p && $p != 0 && $p != 1 ]]; do spare+="$p "; p=$(awk '{print $4}' "/proc/$p/stat" 2>/dev/null); done
  for pid in $(ls /proc | grep -E '^[0-9]+$'); do
    [[ $spare == *" $pid "* ]] && continue
    { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | grep -qF -- "$1/" && pids+=("$pid")
  done
  ((${#pids[@]})) && kill -TERM "${pids[@]}" 2>/dev/null
  for i in $(seq 1 50); do
    local left=0
    for pid in "${pids[@]}"; do node_alive "$pid" && left=1; done
    ((left)) || break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do node_alive "$pid" && kill -KILL "$pid" 2>/dev/null; done
  local procs
  for procs in $(find /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods -name cgroup.procs 2>/dev/null); do
    for pid in $(cat "$procs" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
  done
}

node_teardown() { # dir (may be gone)
  local dir=$1 bin=${2:-}
  node_kill_all "$dir"
  # kube-proxy's own chains (it removes only what it made).
  [[ -n $bin && -x $bin/kube-proxy ]] && "$bin/kube-proxy" --cleanup --v=0 >/dev/null 2>&1
  local m
  for m in $(awk '{print $2}' /proc/self/mounts | grep -E "^($dir/|/run/netns/cni-|/var/lib/kubelet/|/run/containerd/)" | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
  done
  rm -f /run/netns/cni-* 2>/dev/null
  local h top
  for h in /sys/fs/cgroup/* /sys/fs/cgroup; do
    for top in kubepods k8s.io; do
      [[ -d $h/$top ]] && find "$h/$top" -depth -type d -exec rmdir {} \; 2>/dev/null
    done
  done
  ip link del cni0 2>/dev/null
  local v
  for v in $(ip -o link show type veth 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
    grep -qx "$v" <(grep '^links:' "$NODE_RECORD/machine.before" 2>/dev/null | tr ' ' '\n') || ip link del "$v" 2>/dev/null
  done
  ip addr del "$NODE_IP/32" dev lo 2>/dev/null
  # kubelet's chains, v4 and v6.
  local ipt t
  for ipt in iptables ip6tables; do
    while $ipt -D INPUT -j KUBE-FIREWALL 2>/dev/null; do :; done
    while $ipt -D OUTPUT -j KUBE-FIREWALL 2>/dev/null; do :; done
    $ipt -F KUBE-FIREWALL 2>/dev/null; $ipt -X KUBE-FIREWALL 2>/dev/null
    for t in filter nat mangle; do $ipt -t $t -F KUBE-KUBELET-CANARY 2>/dev/null; $ipt -t $t -X KUBE-KUBELET-CANARY 2>/dev/null; done
    $ipt -t mangle -X KUBE-IPTABLES-HINT 2>/dev/null
  done
  # Anything else differing from the record (a chain a newer kubelet adds): put the
  # recorded rules back whole, the guard last of all.
  if [[ -f $NODE_RECORD/iptables.before ]]; then
    if ! diff -q <(grep '^ipv4: ' "$NODE_RECORD/machine.before" | cut -c7-) \
      <(node_iptables_state iptables | grep -v SLUICE-GUARD) >/dev/null; then
      node_guard_remove
      node_log "iptables differ from the record after cleanup: restoring the recorded rules"
      iptables-restore <"$NODE_RECORD/iptables.before"
      node_flush_unrecorded_tables iptables
    fi
    if ! diff -q <(grep '^ipv6: ' "$NODE_RECORD/machine.before" | cut -c7-) <(node_iptables_state ip6tables) >/dev/null; then
      node_log "ip6tables differ from the record after cleanup: restoring the recorded rules"
      ip6tables-restore <"$NODE_RECORD/ip6tables.before"
      node_flush_unrecorded_tables ip6tables
    fi
  fi
  if [[ -f $NODE_RECORD/sysctl.before ]]; then
    local k v
    while IFS='=' read -r k v; do
      [[ $(sysctl -n "$k" 2>/dev/null | tr -d ' ') == "$v" ]] || sysctl -qw "$k=$v" 2>/dev/null
    done <"$NODE_RECORD/sysctl.before"
  fi
  if [[ -f $NODE_RECORD/host-dirs.created ]]; then
    local d
    while read -r d; do [[ -n $d ]] && rm -rf "$d"; done <"$NODE_RECORD/host-dirs.created"
  fi
  node_guard_remove
}

# iptables-restore leaves alone the tables its input does not name: empty those the record
# has no rules in.
node_flush_unrecorded_tables() { # iptables|ip6tables
  local t
  for t in $("$1-save" 2>/dev/null | awk '/^\*/ { print substr($0, 2) }'); do
    grep -q "^\*$t\$" "$NODE_RECORD/$1.before" && continue
    "$1" -t "$t" -F; "$1" -t "$t" -X
  done
}

# After a teardown: what differs from the record, in $NODE_LAST_DOWN; 0 if nothing.
node_verify_clean() {
  [[ -f $NODE_RECORD/machine.before ]] || return 0
  local now=$NODE_RECORD/machine.after
  node_machine_state >"$now"
  if diff "$NODE_RECORD/machine.before" "$now" >"$NODE_RECORD/machine.diff"; then
    echo "clean: the machine is as it was before the node started ($(date -u +%FT%TZ))" >"$NODE_LAST_DOWN"
    return 0
  fi
  { echo "NOT CLEAN: the node left this behind ($(date -u +%FT%TZ)); < before, > after:"
    cat "$NODE_RECORD/machine.diff"; } >"$NODE_LAST_DOWN"
  return 1
}

# ---- bring-up ---------------------------------------------------------------------------

node_render() { # template out dir
  sed -e "s|@DIR@|$3|g" -e "s|@NODE_IP@|$NODE_IP|g" -e "s|@NODE_NAME@|$NODE_NAME|g" \
    -e "s|@POD_CIDR@|$POD_CIDR|g" -e "s|@POD_GW@|$POD_GW|g" -e "s|@DNS_IP@|$DNS_IP|g" \
    -e "s|@RUNC@|$(command -v runc)|g" -e "s|@CNI_BIN@|$NODE_CNI_BIN|g" \
    -e "s|@COREDNS_IMAGE@|$NODE_COREDNS_IMAGE|g" "$1" >"$2"
}

node_wait() { # what seconds command...: poll a condition, bounded
  local what=$1 limit=$2 end=$((SECONDS + $2)); shift 2
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < end)) || { node_log "timed out after ${limit}s waiting for $what"; return 1; }
    sleep 0.2
  done
}

node_start_component() { # name binary args...
  local name=$1; shift
  setsid "$@" </dev/null >"$NODE_DIR/logs/$name.log" 2>&1 &
  echo $! >"$NODE_DIR/$name.pid"
}

# A DNS question for NAME to SERVER over UDP; true when it is answered with an address.
node_dns_answers() { # server name
  python3 - "$1" "$2" <<'PY'
import socket, struct, sys
server, name = sys.argv[1], sys.argv[2]
q = struct.pack(">HHHHHH", 0x5a17, 0x0100, 1, 0, 0, 0)
q += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0" + struct.pack(">HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1)
s.sendto(q, (server, 53))
r = s.recv(512)
ident, flags, _, answers = struct.unpack(">HHHH", r[:8])
sys.exit(0 if ident == 0x5a17 and flags & 0xF == 0 and answers > 0 else 1)
PY
}

# containerd, the pause and CoreDNS images, kubelet, kube-controller-manager,
# kube-scheduler, kube-proxy and CoreDNS, beside the control plane already in DIR.
node_start() { # dir bin
  NODE_DIR=$1
  local bin=$2 k="$2/kubectl --kubeconfig $1/kubeconfig --request-timeout=10s"
  NODE_CNI_BIN=/usr/lib/cni
  NODE_COREDNS_IMAGE=local.test/coredns:$("$bin/coredns" -version 2>/dev/null | awk -F- '/CoreDNS/ {print $2; exit}')
  local here; here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
  mkdir -p "$NODE_DIR/node/cni" "$NODE_DIR/node/ipam" "$NODE_DIR/node/images" "$NODE_DIR/containerd" "$NODE_DIR/logs/pods"
  node_render "$here/containerd.toml" "$NODE_DIR/node/containerd.toml" "$NODE_DIR"
  node_render "$here/pod-net.conflist" "$NODE_DIR/node/cni/10-pod-net.conflist" "$NODE_DIR"
  node_render "$here/kubelet.yaml" "$NODE_DIR/node/kubelet.yaml" "$NODE_DIR"
  node_render "$here/kube-proxy.yaml" "$NODE_DIR/node/kube-proxy.yaml" "$NODE_DIR"
  node_render "$here/coredns.yaml" "$NODE_DIR/node/coredns.yaml" "$NODE_DIR"
  echo "# The test node resolves cluster names only (CoreDNS has no upstream)." >"$NODE_DIR/node/resolv.conf"

  node_start_component containerd containerd --config "$NODE_DIR/node/containerd.toml"
  local ctr="ctr --address $NODE_DIR/containerd/containerd.sock -n k8s.io"
  node_wait containerd 60 $ctr version || return 1
  "$here/mkimage" local.test/pause:3.10 "$bin/pause" "$NODE_DIR/node/images/pause.tar" --dest /pause >/dev/null || return 1
  "$here/mkimage" "$NODE_COREDNS_IMAGE" "$bin/coredns" "$NODE_DIR/node/images/coredns.tar" --dest /coredns >/dev/null || return 1
  $ctr images import "$NODE_DIR/node/images/pause.tar" >/dev/null || return 1
  $ctr images import "$NODE_DIR/node/images/coredns.tar" >/dev/null || return 1

  node_start_component kubelet "$bin/kubelet" --config "$NODE_DIR/node/kubelet.yaml" \
    --kubeconfig "$NODE_DIR/kubeconfig" --root-dir "$NODE_DIR/kubelet" --cert-dir "$NODE_DIR/kubelet-pki" \
    --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" --v=2
  node_start_component kube-controller-manager "$bin/kube-controller-manager" \
    --kubeconfig "$NODE_DIR/kubeconfig" --authentication-kubeconfig "$NODE_DIR/kubeconfig" \
    --authorization-kubeconfig "$NODE_DIR/kubeconfig" \
    --service-account-private-key-file "$NODE_DIR/pki/sa.key" --root-ca-file "$NODE_DIR/pki/ca.crt" \
    --use-service-account-credentials=true --cluster-cidr="$POD_CIDR" --allocate-node-cidrs=false \
    --service-cluster-ip-range="$SERVICE_CIDR" --cluster-signing-cert-file "$NODE_DIR/pki/ca.crt" \
    --cluster-signing-key-file "$NODE_DIR/pki/ca.key" --bind-address=127.0.0.1 --secure-port=0 \
    --leader-elect=false --v=1
  node_start_component kube-scheduler "$bin/kube-scheduler" --kubeconfig "$NODE_DIR/kubeconfig" \
    --authentication-kubeconfig "$NODE_DIR/kubeconfig" --authorization-kubeconfig "$NODE_DIR/kubeconfig" \
    --bind-address=127.0.0.1 --secure-port=0 --leader-elect=false --v=1
  node_start_component kube-proxy "$bin/kube-proxy" --config "$NODE_DIR/node/kube-proxy.yaml" --v=1

  node_ready() { [[ $($k get node "$NODE_NAME" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}') == True ]]; }
  node_wait "node $NODE_NAME Ready" 120 node_ready || return 1
  node_wait "the default ServiceAccount" 120 $k -n default get serviceaccount default || return 1
  node_wait "kube-root-ca.crt" 120 $k -n default get configmap kube-root-ca.crt || return 1
  node_wait "kube-proxy" 60 curl -sf http://127.0.0.1:10256/healthz || return 1
  $k apply -f "$NODE_DIR/node/coredns.yaml" >/dev/null || return 1
  node_wait "CoreDNS to answer" 120 node_dns_answers "$DNS_IP" kubernetes.default.svc.cluster.local || return 1
}
