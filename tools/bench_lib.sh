# shellcheck shell=bash disable=SC2034  # VENV, MEDIUM are set for the caller
# Helpers shared by the side-by-side benchmark scripts (tools/compare_transports.sh,
# tools/p2p_transports.sh). Source it; it defines functions and sets nothing else.
#
#   bench_log MSG...                 timestamped line on stderr
#   bench_die MSG...                 "<script>: MSG" on stderr, exit 2
#   bench_to_bytes 64K               -> 65536 (K/M/G are powers of 1024; exits 2 on a bad size)
#   bench_size_list "8,1K,64K"       -> "8 1024 65536"
#   bench_size_str 65536             -> 64K (inverse, for labels)
#   bench_iters SIZE ITER_BYTES MIN MAX   -> clamp(ITER_BYTES / SIZE, MIN, MAX)
#   bench_warmup ITERS               -> clamp(ITERS / 10, 1, 20)
#   bench_probe LABEL BASELINES_BUILD    "# probe (LABEL): <cross-core ping-pong> <memcpy>" from
#                                    the peer baselines' pingpong/membw (/work/shared/baselines)
#   bench_load LABEL                 "# load (LABEL): 1/5/15-minute load averages, time, and the
#                                    other programs seen running (bench_others)"
#   bench_wait_quiet MAX DEADLINE STEP   while the 1-minute load is >= MAX and `date +%s` is
#                                    before DEADLINE (epoch seconds), sleep STEP seconds; prints
#                                    one `# load` line per check. Returns 0 when quiet, 1 when the
#                                    deadline passed first (the caller decides whether to go on).
#   bench_run_timeout SECS CMD...    CMD under `timeout -k 5 SECS` (124/137 on a hang)
#   bench_free_port                  a TCP port nobody listens on at 127.0.0.1 (best effort)
#   bench_build_line BINARY REPO     "# chorus build: BINARY (built <mtime>); checkout HEAD <hash subject>,
#                                    N modified tracked files" (the binary may predate HEAD)
#   bench_chorus_variant NAME        the environment of one Chorus transport variant: sets
#                                    VENV (array of VAR=value) and MEDIUM (sm|tcp); 1 if unknown.
#                                    Names: shm tcp ucx-tcp ucx-sm ofi-tcp ofi-shm plugin-ucx
#                                    (plugin-ucx reads PLUGIN and PLUGIN_UCX_TLS). The callers
#                                    also export CHORUS_SOCKET_IFNAME=lo UCX_NET_DEVICES=lo.
#
# tools/compare_allreduce.sh has its own copies of to_bytes, probe and the iteration clamp;
# it could source this file instead (not changed here: it belongs to another change).

bench_log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

bench_die() {
  echo "$(basename "$0"): $*" >&2
  exit 2
}

bench_to_bytes() {
  local s=$1 n mult=1
  n=${s%%[KkMmGg]*}
  case "${s:${#n}}" in
    "") ;;
    K | k) mult=1024 ;;
    M | m) mult=$((1024 * 1024)) ;;
    G | g) mult=$((1024 * 1024 * 1024)) ;;
    *) bench_die "bad size '$s'" ;;
  esac
  [[ "$n" =~ ^[0-9]+$ ]] || bench_die "bad size '$s'"
  echo $((n * mult))
}

bench_size_list() {
  local out=() s
  local -a parts
  IFS=',' read -r -a parts <<<"$1"
  for s in "${parts[@]}"; do
    [[ -n "$s" ]] || continue
    out+=("$(bench_to_bytes "$s")") || exit 2
  done
  echo "${out[*]}"
}

bench_size_str() {
  local n=$1
  if ((n >= 1073741824 && n % 1073741824 == 0)); then echo "$((n / 1073741824))G"
  elif ((n >= 1048576 && n % 1048576 == 0)); then echo "$((n / 1048576))M"
  elif ((n >= 1024 && n % 1024 == 0)); then echo "$((n / 1024))K"
  else echo "$n"; fi
}

bench_iters() {
  local size=$1 budget=$2 lo=$3 hi=$4 n
  n=$((budget / size))
  ((n < lo)) && n=$lo
  ((n > hi)) && n=$hi
  echo "$n"
}

bench_warmup() {
  local w=$(($1 / 10))
  ((w < 1)) && w=1
  ((w > 20)) && w=20
  echo "$w"
}

bench_probe() {
  local label=$1 build=$2 p m
  p=$("$build/pingpong" --probe 2>/dev/null) || p="pingpong probe failed"
  m=$("$build/membw" --probe 2>/dev/null) || m="membw probe failed"
  echo "# probe ($label): $p $m"
}

bench_load() {
  echo "# load ($1): $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null) (1/5/15 min) at $(date -u +%H:%M:%SZ); $(bench_others)"
}

# Other processes competing for the cores right now: the load average also counts this
# benchmark's own ranks, so sample the running (R) processes 5 times over 1 s, leaving out the
# benchmark's programs, and name the commonest ("cc1plus x7" = 7 sightings in 5 samples).
bench_others() {
  local i
  for i in 1 2 3 4 5; do
    ps -eo stat=,comm= 2>/dev/null | awk '$1 ~ /^R/ && $2 !~ /^(ps|awk|sort|uniq|head|sleep|bash|timeout|all_reduce_perf|sendrecv_perf|mpi_allreduce_b|mpirun|orted|ucx_perftest|fi_pingpong|pingpong|membw)$/ { print $2 }'
    sleep 0.2
  done | sort | uniq -c | sort -rn | head -4 |
    awk 'BEGIN { s = "" } { s = s (NR > 1 ? ", " : "") $2 " x" $1 } END { print "others running in 5 samples: " (s == "" ? "none" : s) }'
}

bench_wait_quiet() {
  local max=$1 deadline=$2 step=$3 l
  while :; do
    read -r l _ </proc/loadavg
    bench_load "waiting for 1-min load < $max" >&2
    if awk -v l="$l" -v m="$max" 'BEGIN { exit !(l < m) }'; then return 0; fi
    (($(date +%s) + step <= deadline)) || return 1
    sleep "$step"
  done
}

bench_run_timeout() {
  local secs=$1
  shift
  timeout -k 5 "$secs" "$@"
}

bench_free_port() {
  local p tries=0
  while ((tries++ < 50)); do
    p=$((20000 + RANDOM % 20000))
    # ss may be missing; then trust the random pick
    if ! command -v ss >/dev/null || ! ss -Htln "sport = :$p" 2>/dev/null | grep -q .; then
      echo "$p"
      return 0
    fi
  done
  echo $((20000 + RANDOM % 20000))
}

bench_chorus_variant() {
  VENV=()
  case "$1" in
    shm) MEDIUM=sm VENV=(CHORUS_TRANSPORT=shm) ;;
    tcp) MEDIUM=tcp VENV=(CHORUS_TRANSPORT=tcp) ;;
    ucx-tcp) MEDIUM=tcp VENV=(CHORUS_TRANSPORT=ucx UCX_TLS=tcp) ;;
    ucx-sm) MEDIUM=sm VENV=(CHORUS_TRANSPORT=ucx "UCX_TLS=sm,tcp") ;;
    ofi-tcp) MEDIUM=tcp VENV=(CHORUS_TRANSPORT=ofi "CHORUS_OFI_PROVIDER=tcp;ofi_rxm") ;;
    ofi-shm) MEDIUM=sm VENV=(CHORUS_TRANSPORT=ofi CHORUS_OFI_PROVIDER=shm) ;;
    plugin-ucx)
      case "${PLUGIN_UCX_TLS:?}" in *sm* | *posix* | *sysv* | *cma*) MEDIUM=sm ;; *) MEDIUM=tcp ;; esac
      VENV=(CHORUS_TRANSPORT=plugin "CHORUS_NET_PLUGIN=${PLUGIN:?}" "UCX_TLS=$PLUGIN_UCX_TLS") ;;
    *) return 1 ;;
  esac
  return 0
}

bench_build_line() {
  local bin=$1 repo=$2
  echo "# chorus build: $bin (built $(date -u -r "$bin" +%Y-%m-%dT%H:%MZ 2>/dev/null || echo '?')); checkout HEAD" \
    "$(git -C "$repo" log -1 --format='%h %ad %s' --date=format:%H:%M 2>/dev/null | cut -c1-90)," \
    "$(git -C "$repo" status --porcelain --untracked-files=no 2>/dev/null | wc -l) modified tracked files"
}

# The closing lines of a run: machine state after it, its duration and failures (appended to
# $OUT/header.txt and shown), then the per-round load lines. Uses $OUT, $start, $failures.
bench_finish() {
  {
    bench_probe after "$1"
    bench_load after
    echo "# took $(($(date +%s) - start)) s; $failures failed launch(es)"
  } | tee -a "$OUT/header.txt"
  grep -h "^# load (after round" "$OUT/header.txt"
  echo
}

# "name:kind:medium ..." for the given variants (what the summary scripts read); needs `variant`.
bench_variant_table() {
  local v table=""
  for v in "$@"; do
    variant "$v"
    table+="$v:$KIND:$MEDIUM "
  done
  echo "$table"
}
