#!/usr/bin/env bash
# An emulated multi-host cluster in Linux network namespaces, for running Chorus ranks as if
# they sat on different hosts joined by links of different speeds. A sourceable bash library
# (functions ncl_*) and a command line around it; tests/integration/netns_cluster.sh and
# tools/bench_topology.sh use it.
#
# The cluster (H hosts, prefix P, subnet S, default P=chorus-<pid>, S=10.213.47):
#
#     P-h0 [veth0 S.1/24] ==veth== [port0] --+
#     P-h1 [veth1 S.2/24] ==veth== [port1] --+-- br0   (all in namespace P-sw)
#     ...                                    |
#     P-hN [vethN S.N+1]  ==veth== [portN] --+
#
#   - every host is a network namespace with lo up and one end of a veth pair, named veth<h>,
#     holding address S.(h+1)/24; the other end, port<h>, is a port of the Linux bridge br0 in
#     the switch namespace P-sw. Nothing is created in the calling namespace, so runs with
#     different prefixes never collide, and deleting the namespaces deletes everything.
#   - link shaping (tc): host h's rate applies in both directions, as the root qdisc (tbf) on
#     the egress of veth<h> (host to switch) and of port<h> (switch to host). The bucket holds
#     about 4 ms of traffic (at least 64 KiB, so a GSO packet passes whole) and the queue 20 ms,
#     which keeps TCP close to the rate. An added delay (netem, under the tbf) applies to each
#     direction of the host's link, so between two hosts with delays a and b one way takes
#     a + b. Unshaped veth runs at the speed of the CPU, which is fast but noisy: shape every
#     link when measuring.
#   - ranks: R_h ranks on host h, numbered host after host (block) or round robin over the
#     hosts (cyclic). Each is started as
#         ip netns exec P-h<h> env RANK=r WORLD_SIZE=n LOCAL_RANK=l LOCAL_WORLD_SIZE=R_h \
#             MASTER_ADDR=<rank 0's host address> MASTER_PORT=<port> CHORUS_SOCKET_IFNAME=veth<h> \
#             CHORUS_CLUSTER_FILE=<file> <tool> <args>
#     (torchrun-style launch, src/bootstrap/launcher_env.cpp; the root listens on MASTER_PORT+1).
#     Chorus's host identity includes the network namespace (src/base/host_identity.cpp), so
#     ranks in different host namespaces talk TCP over the bridge, ranks in one share memory.
#   - a cluster description file (CHORUS_CLUSTER_FILE, src/topology/cluster_file.h) naming each
#     host by its address: "host S.(h+1) name=h<h> gbps=<its shaped rate>", plus, where delays
#     are set, "link h<a> h<b> latency_us=<one-way delay>" for every pair of hosts.
#
# Needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN), iproute2 (ip, tc) and a kernel with network
# namespaces, veth, bridge, tbf and (for delays) netem. Where something is missing, ncl_up
# returns 77 and NCL_ERROR says what failed; callers then skip (exit 77).
#
# Library use:
#   source tools/netns_cluster.sh
#   ncl_parse_args --hosts 3 --ranks 2,1,2 --rate 1gbit --rate h1=200mbit   # or set NCL_* below
#   ncl_up || exit $?          # creates it; cleans up at exit (trap EXIT INT TERM)
#   ncl_run allreduce 60 ./all_reduce_perf -b 4 -e 1M -f 8 -c 1   # logs: $NCL_DIR/allreduce/
#   ncl_down                   # or leave it to the exit trap
# A caller that needs its own work at exit defines a function ncl_on_exit; the trap calls it
# with the exit status after the namespaces are gone. A directory that ncl_up made itself (no
# --dir) is removed at exit when the exit status is 0 and kept otherwise (NCL_KEEP=1: always).
#
# Command line:
#   tools/netns_cluster.sh run [options] -- <tool> [args]   build, run every rank, tear down
#   tools/netns_cluster.sh up [options]       build and leave it (prefix chorus-up<pid>; prints
#                                             the ranks' environment and the prefix for down)
#   tools/netns_cluster.sh down <prefix>      delete the namespaces <prefix>-* (ending what
#                                             still runs in them)
#   tools/netns_cluster.sh cleanup-stale      delete chorus-<pid>-* namespaces whose pid is gone
#                                             (left by a killed run; pids seen from this pid
#                                             namespace)
#   tools/netns_cluster.sh check              can namespaces be made here? (exit 0 or 77)
# Options (also for ncl_parse_args):
#   --hosts N                 number of hosts (default 2, or the length of --ranks' list)
#   --ranks R | R0,R1,...     ranks per host, for all or host by host (default 1)
#   --rate RATE | hN=RATE     tc rate (e.g. 400mbit, 1gbit) for all hosts or host N; "none"
#                             leaves a link unshaped (default: none)
#   --delay D | hN=D          netem delay per direction (e.g. 1ms) for all hosts or host N
#   --placement block|cyclic  rank numbering over the hosts (default block)
#   --subnet A.B.C            the /24 to use (default 10.213.47, or NCL_SUBNET)
#   --prefix NAME             namespace prefix (default chorus-<pid>)
#   --dir DIR                 where logs and the cluster file go (default a new temp dir)
#   --port P                  MASTER_PORT of the first run (default 29500; +2 per run)
#   --timeout S               seconds a run may take (command line run only; default 120)

# --- configuration (set before ncl_up, or through ncl_parse_args) ---------------------------
NCL_SUBNET=${NCL_SUBNET:-10.213.47}
NCL_PREFIX=${NCL_PREFIX:-chorus-$$}
NCL_DIR=${NCL_DIR:-}
NCL_PORT=${NCL_PORT:-29500}
NCL_PLACEMENT=${NCL_PLACEMENT:-block}
NCL_HOSTS=${NCL_HOSTS:-0}           # 0: from NCL_RANKS, else 2
declare -a NCL_RANKS=()             # ranks per host; one entry: for every host
NCL_RATE_ALL=${NCL_RATE_ALL:-none}  # rate of every host without its own
NCL_DELAY_ALL=${NCL_DELAY_ALL:-}    # delay of every host without its own
declare -A NCL_RATE_OF=()           # host index -> rate
declare -A NCL_DELAY_OF=()          # host index -> delay
NCL_TIMEOUT=${NCL_TIMEOUT:-120}
NCL_KEEP=${NCL_KEEP:-0}             # 1: keep the directory ncl_up made even after a success

# --- state (set by ncl_up) -------------------------------------------------------------------
NCL_ERROR=""
NCL_UP=0
NCL_NRANKS=0
NCL_CLUSTER_FILE=""
declare -a NCL_HOST_NS=() NCL_HOST_IF=() NCL_HOST_ADDR=() NCL_HOST_RANKS=() NCL_HOST_RATE=() NCL_HOST_DELAY=()
declare -a NCL_RANK_HOST=() NCL_RANK_LOCAL=()  # rank -> host index, local rank
declare -a NCL_PIDS=()
NCL_RUNS=0
NCL_SWITCH_NS=""
NCL_DIR_MADE=0

ncl__die() {
  echo "netns_cluster: $*" >&2
  return 1
}

# ncl_parse_args <options>: fills the configuration; the arguments after "--" (if any) are left
# in NCL_REST.
ncl_parse_args() {
  NCL_REST=()
  while (($# > 0)); do
    case "$1" in
      --hosts) NCL_HOSTS=$2; shift 2 ;;
      --ranks) IFS=, read -r -a NCL_RANKS <<<"$2"; shift 2 ;;
      --rate | --delay)
        local opt=$1 value=$2 idx
        shift 2
        if [[ $value =~ ^h([0-9]+)=(.+)$ ]]; then
          idx=${BASH_REMATCH[1]}
          if [[ $opt == --rate ]]; then NCL_RATE_OF[$idx]=${BASH_REMATCH[2]}; else NCL_DELAY_OF[$idx]=${BASH_REMATCH[2]}; fi
        elif [[ $opt == --rate ]]; then
          NCL_RATE_ALL=$value
        else
          NCL_DELAY_ALL=$value
        fi
        ;;
      --placement) NCL_PLACEMENT=$2; shift 2 ;;
      --subnet) NCL_SUBNET=$2; shift 2 ;;
      --prefix) NCL_PREFIX=$2; shift 2 ;;
      --dir) NCL_DIR=$2; shift 2 ;;
      --port) NCL_PORT=$2; shift 2 ;;
      --timeout) NCL_TIMEOUT=$2; shift 2 ;;
      --) shift; NCL_REST=("$@"); return 0 ;;
      *) ncl__die "unknown option '$1' (see the header of tools/netns_cluster.sh)"; return 2 ;;
    esac
  done
}

# ncl_rate_bps <rate>: tc rate (bit, kbit, mbit, gbit, tbit per second; decimals allowed) in
# bit/s; fails for anything else (tc's "bps" means bytes, too easy to misread: refused).
ncl_rate_bps() {
  local rate=$1 num unit mult
  [[ $rate =~ ^([0-9]+([.][0-9]+)?)([kmgt]?bit)$ ]] || return 1
  num=${BASH_REMATCH[1]}
  unit=${BASH_REMATCH[3]}
  case $unit in
    bit) mult=1 ;; kbit) mult=1000 ;; mbit) mult=1000000 ;; gbit) mult=1000000000 ;; tbit) mult=1000000000000 ;;
  esac
  awk -v n="$num" -v m="$mult" 'BEGIN { printf "%.0f\n", n * m }'
}

# ncl_delay_us <delay>: netem delay (us, ms, s) in microseconds.
ncl_delay_us() {
  local d=$1
  [[ $d =~ ^([0-9]+([.][0-9]+)?)(us|ms|s)$ ]] || return 1
  awk -v n="${BASH_REMATCH[1]}" -v u="${BASH_REMATCH[3]}" \
    'BEGIN { m = (u == "us") ? 1 : (u == "ms") ? 1000 : 1000000; printf "%.0f\n", n * m }'
}

# ncl_check: 0 when namespaces can be made here, else 77 with NCL_ERROR set.
ncl_check() {
  local cmd out probe="chorus-$$-probe"
  for cmd in ip tc timeout awk; do
    if ! command -v "$cmd" >/dev/null 2>&1; then
      NCL_ERROR="cannot create network namespaces: '$cmd' is not installed"
      return 77
    fi
  done
  if ! out=$(ip netns add "$probe" 2>&1); then
    NCL_ERROR="cannot create network namespaces: ip netns add: ${out:-failed} (needs root: CAP_SYS_ADMIN, CAP_NET_ADMIN)"
    return 77
  fi
  if ! out=$(ip netns exec "$probe" true 2>&1); then
    ip netns del "$probe" 2>/dev/null
    NCL_ERROR="cannot enter network namespaces: ip netns exec: ${out:-failed}"
    return 77
  fi
  ip netns del "$probe" 2>/dev/null
  return 0
}

# Runs a setup command; on failure sets NCL_ERROR to "<what>: <command>: <its output>".
ncl__setup() {
  local what=$1 out
  shift
  if ! out=$("$@" 2>&1); then
    NCL_ERROR="$what: $*: ${out:-failed}"
    return 1
  fi
}

# ncl__shape <ns> <dev> <rate> <delay>: tbf (and netem under it) on the egress of dev.
ncl__shape() {
  local ns=$1 dev=$2 rate=$3 delay=$4 bps burst
  if [[ $rate != none ]]; then
    bps=$(ncl_rate_bps "$rate") || { NCL_ERROR="bad rate '$rate' (use e.g. 100mbit, 1gbit)"; return 1; }
    # 4 ms of traffic, at least 64 KiB: tbf passes a packet only when the bucket holds it all.
    burst=$(awk -v b="$bps" 'BEGIN { x = b / 8 * 0.004; if (x < 65536) x = 65536; printf "%.0f\n", x }')
    ncl__setup "cannot shape links (tc tbf)" tc -n "$ns" qdisc replace dev "$dev" root handle 1: \
      tbf rate "$rate" burst "$burst" latency 20ms || return 1
    if [[ -n $delay ]]; then
      ncl__setup "cannot delay links (tc netem)" tc -n "$ns" qdisc add dev "$dev" parent 1:1 handle 10: \
        netem delay "$delay" limit 100000 || return 1
    fi
  elif [[ -n $delay ]]; then
    ncl__setup "cannot delay links (tc netem)" tc -n "$ns" qdisc replace dev "$dev" root handle 10: \
      netem delay "$delay" limit 100000 || return 1
  fi
}

# ncl__resolve: hosts, ranks, rates and delays per host from the configuration.
ncl__resolve() {
  local h nh=$NCL_HOSTS
  if ((nh == 0)); then nh=$((${#NCL_RANKS[@]} > 1 ? ${#NCL_RANKS[@]} : 2)); fi
  if ! [[ $nh =~ ^[0-9]+$ ]] || ((nh < 1 || nh > 250)); then NCL_ERROR="--hosts must be 1..250"; return 1; fi
  if ((${#NCL_RANKS[@]} > 1 && ${#NCL_RANKS[@]} != nh)); then
    NCL_ERROR="--ranks lists ${#NCL_RANKS[@]} hosts but --hosts is $nh"
    return 1
  fi
  [[ $NCL_SUBNET =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || { NCL_ERROR="--subnet must be A.B.C (a /24)"; return 1; }
  NCL_HOST_RANKS=() NCL_HOST_RATE=() NCL_HOST_DELAY=()
  for ((h = 0; h < nh; ++h)); do
    if ((${#NCL_RANKS[@]} > 1)); then NCL_HOST_RANKS[h]=${NCL_RANKS[h]}; else NCL_HOST_RANKS[h]=${NCL_RANKS[0]:-1}; fi
    if ! [[ ${NCL_HOST_RANKS[h]} =~ ^[0-9]+$ ]] || ((NCL_HOST_RANKS[h] < 1)); then
      NCL_ERROR="host $h: ranks must be a positive number, not '${NCL_HOST_RANKS[h]}'"
      return 1
    fi
    NCL_HOST_RATE[h]=${NCL_RATE_OF[$h]:-$NCL_RATE_ALL}
    NCL_HOST_DELAY[h]=${NCL_DELAY_OF[$h]:-$NCL_DELAY_ALL}
    if [[ ${NCL_HOST_RATE[h]} != none ]] && ! ncl_rate_bps "${NCL_HOST_RATE[h]}" >/dev/null; then
      NCL_ERROR="host $h: bad rate '${NCL_HOST_RATE[h]}' (use e.g. 100mbit, 1gbit, or none)"
      return 1
    fi
    if [[ -n ${NCL_HOST_DELAY[h]} ]] && ! ncl_delay_us "${NCL_HOST_DELAY[h]}" >/dev/null; then
      NCL_ERROR="host $h: bad delay '${NCL_HOST_DELAY[h]}' (use e.g. 500us, 2ms)"
      return 1
    fi
  done
  for h in "${!NCL_RATE_OF[@]}" "${!NCL_DELAY_OF[@]}"; do
    ((h < nh)) || { NCL_ERROR="--rate/--delay name host h$h, but there are $nh hosts (h0..h$((nh - 1)))"; return 1; }
  done
  ncl_place "$NCL_PLACEMENT"
}

# ncl_place <block|cyclic>: numbers the ranks over the hosts: block puts ranks 0..R0-1 on h0 and
# so on; cyclic deals them out one host at a time (h0, h1, ..., h0, ...), so that a host's ranks
# are not contiguous. May be called again between runs.
ncl_place() {
  local h l r=0 placed=1
  local -a used=()
  case $1 in
    block | cyclic) NCL_PLACEMENT=$1 ;;
    *) NCL_ERROR="placement must be block or cyclic, not '$1'"; return 1 ;;
  esac
  NCL_RANK_HOST=() NCL_RANK_LOCAL=()
  if [[ $NCL_PLACEMENT == block ]]; then
    for ((h = 0; h < ${#NCL_HOST_RANKS[@]}; ++h)); do
      for ((l = 0; l < NCL_HOST_RANKS[h]; ++l)); do NCL_RANK_HOST[r]=$h NCL_RANK_LOCAL[r]=$l r=$((r + 1)); done
    done
  else
    for ((h = 0; h < ${#NCL_HOST_RANKS[@]}; ++h)); do used[h]=0; done
    while ((placed)); do
      placed=0
      for ((h = 0; h < ${#NCL_HOST_RANKS[@]}; ++h)); do
        if ((used[h] < NCL_HOST_RANKS[h])); then
          NCL_RANK_HOST[r]=$h NCL_RANK_LOCAL[r]=${used[h]}
          used[h]=$((used[h] + 1)) r=$((r + 1)) placed=1
        fi
      done
    done
  fi
  NCL_NRANKS=$r
}

# ncl__write_cluster_file: the CHORUS_CLUSTER_FILE describing what ncl_up built.
ncl__write_cluster_file() {
  local h a b f=$NCL_DIR/cluster.txt
  {
    echo "# Emulated cluster $NCL_PREFIX (tools/netns_cluster.sh): one bridge, host h<N> at $NCL_SUBNET.<N+1>."
    for ((h = 0; h < ${#NCL_HOST_NS[@]}; ++h)); do
      if [[ ${NCL_HOST_RATE[h]} == none ]]; then
        echo "host ${NCL_HOST_ADDR[h]} name=h$h"
      else
        echo "host ${NCL_HOST_ADDR[h]} name=h$h gbps=$(awk -v b="$(ncl_rate_bps "${NCL_HOST_RATE[h]}")" 'BEGIN { printf "%g\n", b / 1e9 }')"
      fi
    done
    for ((a = 0; a < ${#NCL_HOST_NS[@]}; ++a)); do
      for ((b = a + 1; b < ${#NCL_HOST_NS[@]}; ++b)); do
        if [[ -n ${NCL_HOST_DELAY[a]}${NCL_HOST_DELAY[b]} ]]; then
          local da=0 db=0
          [[ -n ${NCL_HOST_DELAY[a]} ]] && da=$(ncl_delay_us "${NCL_HOST_DELAY[a]}")
          [[ -n ${NCL_HOST_DELAY[b]} ]] && db=$(ncl_delay_us "${NCL_HOST_DELAY[b]}")
          echo "link h$a h$b latency_us=$((da + db))"
        fi
      done
    done
  } >"$f"
  NCL_CLUSTER_FILE=$f
}

# ncl_up: builds the cluster (see the header). Returns 0; 77 where this machine cannot
# (NCL_ERROR says why); 1 for a bad configuration or a failed step (NCL_ERROR).
ncl_up() {
  local rc=0
  ncl__resolve || return 1
  ncl_check || return $?
  if [[ -z $NCL_DIR ]]; then
    NCL_DIR=$(mktemp -d "${TMPDIR:-/tmp}/netns_cluster.XXXXXX") || return 1
    NCL_DIR_MADE=1
  fi
  mkdir -p "$NCL_DIR" || return 1
  NCL_UP=1
  trap 'ncl__exit' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  ncl__build || rc=$?
  ((rc == 0)) || ncl_down
  return "$rc"
}

ncl__build() {
  local h rc ns sw
  sw="$NCL_PREFIX-sw"
  NCL_SWITCH_NS=$sw
  NCL_HOST_NS=() NCL_HOST_IF=() NCL_HOST_ADDR=()
  # Everything that fails below for want of a kernel feature is a skip (77); NCL_ERROR says which.
  rc=77
  ncl__setup "cannot create network namespaces" ip netns add "$sw" || return $rc
  ncl__setup "cannot configure a namespace" ip -n "$sw" link set lo up || return $rc
  ncl__setup "cannot create a bridge" ip -n "$sw" link add br0 type bridge || return $rc
  ncl__setup "cannot configure the bridge" ip -n "$sw" link set br0 up || return $rc
  for ((h = 0; h < ${#NCL_HOST_RANKS[@]}; ++h)); do
    ns="$NCL_PREFIX-h$h"
    NCL_HOST_NS[h]=$ns
    NCL_HOST_IF[h]="veth$h"
    NCL_HOST_ADDR[h]="$NCL_SUBNET.$((h + 1))"
    ncl__setup "cannot create network namespaces" ip netns add "$ns" || return $rc
    ncl__setup "cannot configure a namespace" ip -n "$ns" link set lo up || return $rc
    ncl__setup "cannot create veth pairs" ip -n "$ns" link add "veth$h" type veth peer name "port$h" netns "$sw" || return $rc
    ncl__setup "cannot attach a veth to the bridge" ip -n "$sw" link set "port$h" master br0 || return $rc
    ncl__setup "cannot configure a veth" ip -n "$sw" link set "port$h" up || return $rc
    ncl__setup "cannot configure a veth" ip -n "$ns" addr add "${NCL_HOST_ADDR[h]}/24" dev "veth$h" || return $rc
    ncl__setup "cannot configure a veth" ip -n "$ns" link set "veth$h" up || return $rc
    ncl__shape "$ns" "veth$h" "${NCL_HOST_RATE[h]}" "${NCL_HOST_DELAY[h]}" || return $rc
    ncl__shape "$sw" "port$h" "${NCL_HOST_RATE[h]}" "${NCL_HOST_DELAY[h]}" || return $rc
  done
  ncl__write_cluster_file
  # The bridge forwards once its ports are up: check that every host reaches h0.
  if command -v ping >/dev/null 2>&1; then
    for ((h = 1; h < ${#NCL_HOST_NS[@]}; ++h)); do
      ncl__setup "host h$h cannot reach h0" ip netns exec "${NCL_HOST_NS[h]}" ping -c 1 -W 2 "${NCL_HOST_ADDR[0]}" || return 1
    done
  fi
}

# ncl_describe: one line per host.
ncl_describe() {
  local h r list
  echo "cluster $NCL_PREFIX: ${#NCL_HOST_NS[@]} hosts, $NCL_NRANKS ranks ($NCL_PLACEMENT), switch $NCL_SWITCH_NS, files in $NCL_DIR"
  for ((h = 0; h < ${#NCL_HOST_NS[@]}; ++h)); do
    list=""
    for ((r = 0; r < NCL_NRANKS; ++r)); do
      ((NCL_RANK_HOST[r] == h)) && list+="${list:+,}$r"
    done
    printf '  h%-3d %-22s %-16s rate %-9s delay %-6s ranks %s\n' "$h" "${NCL_HOST_NS[h]}" "${NCL_HOST_ADDR[h]}/24" \
      "${NCL_HOST_RATE[h]}" "${NCL_HOST_DELAY[h]:-0}" "$list"
  done
}

# ncl_rank_env <rank> <master port>: NCL_ENV = the variables that launch that rank (torchrun
# style), its interface and the cluster file.
ncl_rank_env() {
  local r=$1 h=${NCL_RANK_HOST[$1]}
  NCL_ENV=(RANK="$r" WORLD_SIZE="$NCL_NRANKS" LOCAL_RANK="${NCL_RANK_LOCAL[r]}" LOCAL_WORLD_SIZE="${NCL_HOST_RANKS[h]}"
    MASTER_ADDR="${NCL_HOST_ADDR[${NCL_RANK_HOST[0]}]}" MASTER_PORT="$2" CHORUS_SOCKET_IFNAME="${NCL_HOST_IF[h]}"
    CHORUS_CLUSTER_FILE="$NCL_CLUSTER_FILE")
}

# ncl_run <label> <timeout s> <tool> [args...]: runs every rank of the tool; each rank's output
# goes to $NCL_DIR/<label>/rank<r>.log (rank 0's is NCL_LAST_LOG). Returns 0 when every rank
# exits 0; otherwise prints every rank's status and output to stderr and returns 1.
ncl_run() {
  local label=$1 limit=$2 r h dir=$NCL_DIR/$1 port failed=0 st
  shift 2
  ((NCL_UP)) || { ncl__die "ncl_run: no cluster (ncl_up first)"; return 1; }
  mkdir -p "$dir"
  port=$((NCL_PORT + 2 * NCL_RUNS))  # the root listens on MASTER_PORT+1; a new pair per run
  NCL_RUNS=$((NCL_RUNS + 1))
  NCL_PIDS=()
  for ((r = 0; r < NCL_NRANKS; ++r)); do
    h=${NCL_RANK_HOST[r]}
    ncl_rank_env "$r" "$port"
    timeout -k 5 "$limit" ip netns exec "${NCL_HOST_NS[h]}" env "${NCL_ENV[@]}" CHORUS_TIMEOUT="${CHORUS_TIMEOUT:-$limit}" \
      "$@" >"$dir/rank$r.log" 2>&1 &
    NCL_PIDS[r]=$!
  done
  local -a status=()
  for ((r = 0; r < NCL_NRANKS; ++r)); do
    st=0
    wait "${NCL_PIDS[r]}" || st=$?
    status[r]=$st
    ((st == 0)) || failed=1
  done
  NCL_PIDS=()
  NCL_LAST_LOG=$dir/rank0.log
  if ((failed)); then
    {
      echo "netns_cluster: run '$label' failed: $*"
      for ((r = 0; r < NCL_NRANKS; ++r)); do
        st=${status[r]}
        echo "---- rank $r (host h${NCL_RANK_HOST[r]}): exit status $st$( ((st == 124 || st == 137)) && echo " (timed out after ${limit}s)") ----"
        cat "$dir/rank$r.log"
      done
      echo "---- end of run '$label' (logs in $dir) ----"
    } >&2
    return 1
  fi
}

# ncl_down: stops ranks still running, deletes the namespaces (and with them every link).
ncl_down() {
  local pid ns
  for pid in "${NCL_PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${NCL_PIDS[@]}"; do wait "$pid" 2>/dev/null; done
  NCL_PIDS=()
  for ns in "${NCL_HOST_NS[@]}" "$NCL_SWITCH_NS"; do
    [[ -n $ns ]] && ip netns del "$ns" 2>/dev/null
  done
  NCL_HOST_NS=()
  NCL_SWITCH_NS=""
  NCL_UP=0
  return 0
}

ncl__exit() {
  local st=$?
  trap - EXIT INT TERM
  ncl_down
  if declare -F ncl_on_exit >/dev/null; then ncl_on_exit "$st"; fi
  if ((st == 0 && NCL_DIR_MADE && !NCL_KEEP)); then rm -rf "$NCL_DIR"; fi
  exit "$st"
}

# ncl__kill_inside <ns>: ends the processes still running in a namespace (ranks of a run that
# was killed), by their ids.
ncl__kill_inside() {
  local pid
  while read -r pid; do
    [[ $pid =~ ^[0-9]+$ ]] && kill "$pid" 2>/dev/null
  done < <(ip netns pids "$1" 2>/dev/null)
  return 0
}

# ncl_down_prefix <prefix>: deletes every namespace named <prefix>-* (and ends what runs there).
ncl_down_prefix() {
  local ns n=0
  while read -r ns _; do
    [[ $ns == "$1"-* ]] || continue
    ncl__kill_inside "$ns"
    ip netns del "$ns" && n=$((n + 1))
  done < <(ip netns list)
  echo "deleted $n namespaces of $1"
}

# ncl_cleanup_stale: deletes chorus-<pid>-* namespaces whose creating process is gone.
ncl_cleanup_stale() {
  local ns n=0
  while read -r ns _; do
    if [[ $ns =~ ^chorus-([0-9]+)-(h[0-9]+|sw|probe)$ ]] && ! kill -0 "${BASH_REMATCH[1]}" 2>/dev/null; then
      ncl__kill_inside "$ns"
      ip netns del "$ns" && n=$((n + 1))
    fi
  done < <(ip netns list)
  echo "deleted $n stale namespaces"
}

ncl__main() {
  local cmd=${1:-}
  shift || true
  case "$cmd" in
    run)
      ncl_parse_args "$@" || exit 2
      ((${#NCL_REST[@]} > 0)) || { ncl__die "run: give the tool after --"; exit 2; }
      local rc=0
      ncl_up || rc=$?
      if ((rc != 0)); then
        echo "netns_cluster: $NCL_ERROR$( ((rc == 77)) && echo "; skipping")" >&2
        exit "$rc"
      fi
      ncl_describe
      ncl_run run "$NCL_TIMEOUT" "${NCL_REST[@]}" || exit 1
      cat "$NCL_LAST_LOG"
      ;;
    up)
      NCL_PREFIX=chorus-up$$  # not chorus-<pid>-: cleanup-stale leaves it alone
      ncl_parse_args "$@" || exit 2
      local rc=0
      ncl_up || rc=$?
      if ((rc != 0)); then
        echo "netns_cluster: $NCL_ERROR" >&2
        exit "$rc"
      fi
      trap - EXIT INT TERM  # leave it standing
      ncl_describe
      echo "cluster file: $NCL_CLUSTER_FILE"
      echo "start the ranks with:"
      local r
      for ((r = 0; r < NCL_NRANKS; ++r)); do
        ncl_rank_env "$r" "$NCL_PORT"
        echo "  ip netns exec ${NCL_HOST_NS[${NCL_RANK_HOST[r]}]} env ${NCL_ENV[*]} <tool> [args] &"
      done
      echo "tear down with: $0 down $NCL_PREFIX"
      ;;
    down)
      [[ -n ${1:-} ]] || { ncl__die "down: give the prefix"; exit 2; }
      ncl_down_prefix "$1"
      ;;
    cleanup-stale) ncl_cleanup_stale ;;
    check)
      if ncl_check; then echo "network namespaces: ok"; else
        echo "netns_cluster: $NCL_ERROR" >&2
        exit 77
      fi
      ;;
    *)
      sed -n '/^# Command line:/,/^# ---/p' "${BASH_SOURCE[0]}" | sed -n '/^# ---/!s/^# \{0,1\}//p' >&2
      exit 2
      ;;
  esac
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  set -uo pipefail
  ncl__main "$@"
fi
