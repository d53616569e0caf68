#!/usr/bin/env bash
# Sourced by bench/*/run: what every benchmark does the same way.
#
# - CPU placement: the servers on one set of CPUs, the load generator on the other
#   (bench_cpus). Every server is started in a session of its own, pinned (bench_start); then
#   every thread of every process of that session is checked against the servers' CPUs, fixed
#   when it strayed (some servers set their own threads' affinity: Knot pins its UDP workers
#   to CPU i mod the online CPU count, whatever taskset said) and printed (bench_placement); after
#   each measured run the check is repeated and a thread that moved during the run voids it.
# - A server's CPU time: utime + stime of every process of its session (/proc/PID/stat, which
#   counts every thread of a process, those that ended too), in clock ticks (bench_cpu_ticks).
# - Medians, ratios, a free loopback port, the summary file bench/run prints at the end, and
#   the clean-up trap that stops every session the script started (bench_cleanup).
#
# Env: SERVER_CPUS, LOAD_CPUS (taskset lists) override the split; BENCH_SUMMARY (set by
# bench/run) is the file the ratios are appended to.

# The CPUs this script may use, one number a line (from its own affinity list).
bench_expand() { # bench_expand LIST: "0-2,5" -> "0 1 2 5"
  local part out=() a b
  IFS=, read -ra parts <<<"$1"
  for part in "${parts[@]}"; do
    if [[ $part == *-* ]]; then
      a=${part%-*} b=${part#*-}
      for ((c = a; c <= b; c++)); do out+=("$c"); done
    elif [[ -n $part ]]; then
      out+=("$part")
    fi
  done
  printf '%s\n' "${out[@]}" | sort -n | uniq | tr '\n' ' ' | sed 's/ $//'
}

# Sets BENCH_SERVER_CPUS / BENCH_LOAD_CPUS (comma lists) and BENCH_NSERVER / BENCH_NLOAD (counts).
# Default split: the last half of the CPUs (at least one) for the servers, the rest for the load
# generator; on one CPU both share it (and the script says so).
bench_cpus() {
  local mine all n ns
  mine=$(awk '/^Cpus_allowed_list:/ {print $2}' /proc/self/status)
  read -ra all <<<"$(bench_expand "$mine")"
  n=${#all[@]}
  if [[ -n ${SERVER_CPUS:-} || -n ${LOAD_CPUS:-} ]]; then
    [[ -n ${SERVER_CPUS:-} && -n ${LOAD_CPUS:-} ]] || { echo "bench: set both SERVER_CPUS and LOAD_CPUS" >&2; exit 2; }
    BENCH_SERVER_CPUS=$(bench_expand "$SERVER_CPUS" | tr ' ' ,)
    BENCH_LOAD_CPUS=$(bench_expand "$LOAD_CPUS" | tr ' ' ,)
  elif ((n == 1)); then
    BENCH_SERVER_CPUS=${all[0]} BENCH_LOAD_CPUS=${all[0]}
    echo "bench: only CPU ${all[0]} is available: servers and load generator share it" >&2
  else
    ns=$((n / 2))
    BENCH_LOAD_CPUS=$(printf '%s\n' "${all[@]:0:n-ns}" | paste -sd,)
    BENCH_SERVER_CPUS=$(printf '%s\n' "${all[@]:n-ns}" | paste -sd,)
  fi
  BENCH_NSERVER=$(tr ',' '\n' <<<"$BENCH_SERVER_CPUS" | grep -c .)
  BENCH_NLOAD=$(tr ',' '\n' <<<"$BENCH_LOAD_CPUS" | grep -c .)
  export BENCH_SERVER_CPUS BENCH_LOAD_CPUS BENCH_NSERVER BENCH_NLOAD
}

# bench_start NAME LOG CMD...: runs CMD pinned to the servers' CPUs in a session of its own
# (its pid is the session id: every process it forks stays in the session), output to LOG.
# bench_start_load NAME LOG CMD...: the same on the load generator's CPUs.
declare -gA BENCH_SID=()
BENCH_SIDS=()
bench_start() { bench_start_on "$BENCH_SERVER_CPUS" "$@"; }
bench_start_load() { bench_start_on "$BENCH_LOAD_CPUS" "$@"; }
bench_start_on() {
  local cpus=$1 name=$2 log=$3 pid sid
  shift 3
  setsid taskset -c "$cpus" "$@" >"$log" 2>&1 &
  pid=$!
  BENCH_SIDS+=("$pid")
  BENCH_SID[$name]=$pid
  # setsid execs in place unless the shell made the child a group leader (job control): check.
  sleep 0.05
  sid=$(ps -o sid= -p "$pid" 2>/dev/null | tr -d ' ') || true
  if [[ -n $sid && $sid != "$pid" ]]; then
    echo "bench: $name (pid $pid) is not the leader of its session ($sid)" >&2
    exit 1
  fi
}

# bench_stop NAME: TERM to NAME's session leader, KILL to what is left of the session after 5 s.
bench_stop() {
  local sid=${BENCH_SID[$1]} pid
  kill -TERM "$sid" 2>/dev/null || true
  for _ in $(seq 50); do
    [[ -n $(bench_sid_pids "$sid") ]] || break
    sleep 0.1
  done
  for pid in $(bench_sid_pids "$sid"); do kill -KILL "$pid" 2>/dev/null || true; done
  wait "$sid" 2>/dev/null || true
}

# The processes of session SID / of NAME's session, one pid a line (none: empty, status 0).
bench_sid_pids() { ps -o pid= --sid "$1" 2>/dev/null | tr -d ' ' || true; }
bench_pids() { bench_sid_pids "${BENCH_SID[$1]}"; }

# bench_threads NAME: "pid tid psr affinity comm" for every thread of every process of NAME.
bench_threads() {
  local pid tid psr comm aff
  while read -r pid tid psr comm; do
    aff=$(awk '/^Cpus_allowed_list:/ {print $2}' "/proc/$pid/task/$tid/status" 2>/dev/null) || continue
    [[ -n $aff ]] || continue
    echo "$pid $tid $psr $aff $comm"
  done < <(ps -L -o pid=,tid=,psr=,comm= --sid "${BENCH_SID[$1]}" 2>/dev/null || true)
}

# bench_placement MODE NAME...: for every thread of each server, its affinity must be the
# servers' CPUs. MODE fix: a stray thread is moved back (taskset -p) and named; show: fix, then
# print every thread (tid, comm, affinity list, the CPU it last ran on); check: a stray thread
# is an error (returns 1 after naming it). A thread's last CPU outside the set, with the right
# affinity, is only possible for a moment after a fix, so it is reported, not failed.
bench_placement() {
  local mode=$1 name want pid tid psr aff comm bad=0 n
  shift
  want=$(bench_expand "$BENCH_SERVER_CPUS")
  for name in "$@"; do
    [[ -n $(bench_pids "$name") ]] || { echo "bench: $name is not running" >&2; return 1; }
    n=0
    while read -r pid tid psr aff comm; do
      n=$((n + 1))
      if [[ $(bench_expand "$aff") != "$want" ]]; then
        if [[ $mode == check ]]; then
          echo "bench: $name thread $tid ($comm, pid $pid) moved to CPUs $aff (servers' CPUs: $BENCH_SERVER_CPUS): the run is void" >&2
          bad=1
        else
          taskset -pc "$BENCH_SERVER_CPUS" "$tid" >/dev/null
          echo "  placement: $name thread $tid ($comm) had set its own affinity to CPUs $aff; moved back to $BENCH_SERVER_CPUS"
          BENCH_MOVED+=("$name:$tid($comm) $aff")
        fi
      fi
    done < <(bench_threads "$name")
    if [[ $mode == show ]]; then
      echo "  $name: $n threads (tid, comm, affinity list as taskset -p shows it, last CPU as ps -L -o psr)"
      bench_threads "$name" | while read -r pid tid psr aff comm; do
        printf '    %7s %-16s cpus %-5s last on %s%s\n' "$tid" "$comm" "$aff" "$psr" \
          "$([[ " $want " == *" $psr "* ]] || echo '  (ran elsewhere before the fix)')"
      done
    fi
  done
  return "$bad"
}
BENCH_MOVED=()

# bench_cpu_ticks NAME: utime + stime of every process of NAME's session, in clock ticks.
bench_cpu_ticks() {
  # shellcheck disable=SC2046 # a list of pids
  bench_pid_ticks $(bench_pids "$1")
}
# bench_pid_ticks PID...: utime + stime of these processes, in clock ticks (a pid gone counts 0).
bench_pid_ticks() {
  local pid line rest total=0 f
  for pid in "$@"; do
    line=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
    rest=${line##*) }
    read -ra f <<<"$rest"
    total=$((total + f[11] + f[12]))
  done
  echo "$total"
}
BENCH_TCK=$(getconf CLK_TCK)
export BENCH_TCK

# Contention on the servers' CPUs: bench_window_begin before a measured run, bench_window_end
# OWN_TICKS after it (the CPU time of what was measured), bench_contention at the end prints how
# the servers' CPUs were spent over the measured runs (/proc/stat): by what was measured, by
# other processes (other servers idling, the edge's upstream, and anything else on the machine),
# stolen by the hypervisor, idle. A large "other" or "stolen" share makes the figures noisy.
# shellcheck disable=SC2120 # LIST is optional: the servers' CPUs by default
bench_cpuset_ticks() { # [LIST]: "busy steal total" of the CPUs of LIST (the servers'), in clock ticks
  awk -v want=" $(bench_expand "${1:-$BENCH_SERVER_CPUS}") " '$1 ~ /^cpu[0-9]+$/ && index(want, " " substr($1, 4) " ") {
      busy += $2 + $3 + $4 + $7 + $8; steal += $9; total += $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }
    END { print busy + 0, steal + 0, total + 0 }' /proc/stat
}
BENCH_ACC=(0 0 0 0) # own busy steal total
bench_contention_reset() { BENCH_ACC=(0 0 0 0); }
bench_window_begin() { read -r BENCH_W_BUSY BENCH_W_STEAL BENCH_W_TOTAL < <(bench_cpuset_ticks); }
bench_window_end() {
  local busy steal total
  read -r busy steal total < <(bench_cpuset_ticks)
  BENCH_ACC=($((BENCH_ACC[0] + $1)) $((BENCH_ACC[1] + busy - BENCH_W_BUSY)) $((BENCH_ACC[2] + steal - BENCH_W_STEAL)) $((BENCH_ACC[3] + total - BENCH_W_TOTAL)))
}
bench_contention() {
  awk -v own="${BENCH_ACC[0]}" -v busy="${BENCH_ACC[1]}" -v steal="${BENCH_ACC[2]}" -v total="${BENCH_ACC[3]}" -v cpus="$BENCH_SERVER_CPUS" 'BEGIN {
    if (total <= 0) exit
    other = busy - own; if (other < 0) other = 0
    idle = total - busy - steal; if (idle < 0) idle = 0
    printf "servers'"'"' CPU(s) %s over the measured runs: %.0f%% what was measured, %.0f%% other processes, %.0f%% stolen by the hypervisor, %.0f%% idle\n",
      cpus, 100 * own / total, 100 * other / total, 100 * steal / total, 100 * idle / total }'
}

# CPU caps, for runs that must be bound by the server rather than the load generator: each
# server in a cgroup of its own (cgroup v2's cpu.max, or the v1 cpu controller's CFS quota) whose
# CPU time can be capped for a run, to a share of the servers' CPUs over 10 ms periods.
#   bench_cap_start ME NAMED PERCENT SERVER...  a cgroup for each SERVER, uncapped, and a line
#                 saying so; where cgroups cannot be made, exits if NAMED is 1 (WORKLOADS asked
#                 for capped runs), else says the capped runs are skipped and returns 1
#   bench_cap_set NAME PERCENT  caps NAME at PERCENT of the servers' CPUs; "max" lifts the cap
#   bench_cap_used TICKS SECONDS PERCENT  the CPU time TICKS over SECONDS as a share (in percent)
#                 of a cap of PERCENT: near 100 when the cap bound the server
# (bench_cap_init and bench_cap_add are bench_cap_start's steps.)
# bench_cleanup removes the cgroups once their processes are gone.
declare -gA BENCH_CAP=()
BENCH_CAP_OK=0 BENCH_CAP_V="" BENCH_CAP_BASE="" BENCH_CAP_WHY=""
BENCH_CAP_PERIOD=10000 # µs
bench_cap_init() {
  if [[ -f /sys/fs/cgroup/cgroup.controllers ]]; then
    BENCH_CAP_V=2 BENCH_CAP_BASE=/sys/fs/cgroup
    if ! grep -qw cpu "$BENCH_CAP_BASE/cgroup.controllers"; then
      BENCH_CAP_WHY="cgroup v2 without the cpu controller"
      return 0
    fi
    if ! grep -qw cpu "$BENCH_CAP_BASE/cgroup.subtree_control" &&
      ! echo +cpu 2>/dev/null >"$BENCH_CAP_BASE/cgroup.subtree_control"; then
      BENCH_CAP_WHY="cannot enable the cpu controller in $BENCH_CAP_BASE/cgroup.subtree_control"
      return 0
    fi
  else
    BENCH_CAP_V=1
    # The v1 hierarchy whose options name the cpu controller (/proc/self/mountinfo: the fields
    # after " - " are the type, the source and the options).
    BENCH_CAP_BASE=$(awk '{ for (i = 1; i <= NF && $i != "-"; i++); if ($(i + 1) == "cgroup" && $(i + 3) ~ /(^|,)cpu(,|$)/) { print $5; exit } }' /proc/self/mountinfo)
    if [[ -z $BENCH_CAP_BASE ]]; then
      BENCH_CAP_WHY="no cgroup v2 and no v1 hierarchy with the cpu controller mounted"
      return 0
    fi
  fi
  local probe=$BENCH_CAP_BASE/onebox-bench.$$.probe
  if ! mkdir "$probe" 2>/dev/null; then
    BENCH_CAP_WHY="cannot create a cgroup in $BENCH_CAP_BASE (not root, or a read-only cgroup file system)"
    return 0
  fi
  rmdir "$probe"
  BENCH_CAP_OK=1
}
bench_cap_add() {
  local dir=$BENCH_CAP_BASE/onebox-bench.$$.$1 pid
  mkdir "$dir"
  BENCH_CAP[$1]=$dir
  for pid in $(bench_pids "$1"); do echo "$pid" >"$dir/cgroup.procs"; done
}
bench_cap_start() {
  local me=$1 named=$2 percent=$3 s
  shift 3
  bench_cap_init
  if ((BENCH_CAP_OK)); then
    for s in "$@"; do bench_cap_add "$s"; done
    echo "capped runs: each server in a cgroup of its own (cgroup v$BENCH_CAP_V under $BENCH_CAP_BASE), capped at $percent% of CPU(s) $BENCH_SERVER_CPUS for those runs only"
    return 0
  fi
  if ((named)); then
    echo "$me: WORKLOADS names capped runs, which need a cgroup: $BENCH_CAP_WHY" >&2
    exit 1
  fi
  echo "capped runs skipped: they need a cgroup: $BENCH_CAP_WHY"
  return 1
}
bench_cap_used() {
  awk -v t="$1" -v hz="$BENCH_TCK" -v d="$2" -v n="$BENCH_NSERVER" -v c="$3" 'BEGIN { printf "%.0f", 100 * t / hz / (d * n * c / 100) }'
}
bench_cap_set() {
  local dir=${BENCH_CAP[$1]} quota=max
  [[ $2 == max ]] || quota=$((BENCH_CAP_PERIOD * BENCH_NSERVER * $2 / 100))
  if [[ $BENCH_CAP_V == 2 ]]; then
    echo "$quota $BENCH_CAP_PERIOD" >"$dir/cpu.max"
  else
    [[ $quota != max ]] || quota=-1
    echo "$BENCH_CAP_PERIOD" >"$dir/cpu.cfs_period_us"
    echo "$quota" >"$dir/cpu.cfs_quota_us"
  fi
}

# bench_rss_kib NAME: the resident memory of every process of NAME's session, summed (KiB).
bench_rss_kib() {
  local pid total=0 kib
  for pid in $(bench_pids "$1"); do
    kib=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null) || continue
    total=$((total + ${kib:-0}))
  done
  echo "$total"
}

# bench_median "v1 v2 ...": the median (mean of the middle two for an even count).
bench_median() {
  tr ' ' '\n' <<<"$1" | grep . | sort -g |
    awk '{a[NR]=$1} END{if (NR == 0) print "nan"; else print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'
}

# bench_ratio A B: A/B with two decimals ("-" when B is 0 or either is missing).
bench_ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (a == "" || b == "" || a == "nan" || b == "nan" || b + 0 == 0) print "-"; else printf "%.2f", a / b }'; }

# bench_spread A_LIST B_LIST: the lowest and highest of the rounds' own ratios A[i]/B[i] (the
# lists hold one figure per round, in round order, as the benchmarks collect them), as
# " (rounds LO–HI)", to follow a ratio of medians: how far the host moved it between rounds.
# Empty when the lists differ in length, hold fewer than two rounds, or a B is 0.
bench_spread() {
  awk -v a="$1" -v b="$2" 'BEGIN {
    n = split(a, x, " "); if (n < 2 || split(b, y, " ") != n) exit
    for (i = 1; i <= n; i++) { if (y[i] + 0 == 0) exit; r = x[i] / y[i]; if (i == 1 || r < lo) lo = r; if (i == 1 || r > hi) hi = r }
    printf " (rounds %.2f–%.2f)", lo, hi }'
}

# bench_summary BENCH WHAT RATIO: one line for the table bench/run prints at the end.
bench_summary() {
  [[ -n ${BENCH_SUMMARY:-} ]] || return 0
  printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$BENCH_SUMMARY"
}

# A loopback port free for TCP and UDP now: below the ephemeral range, with no socket of any
# state on it (a TIME_WAIT left by a benchmark's connections keeps some servers from binding).
declare -gA BENCH_PORTS_TAKEN=()
bench_free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 12000))
    [[ -z ${BENCH_PORTS_TAKEN[$p]:-} ]] || continue
    ss -Hantu "( sport = :$p )" 2>/dev/null | grep -q . && continue
    BENCH_PORTS_TAKEN[$p]=1
    echo "$p"
    return
  done
}

# bench_edge_upstream DIR PORT: the edge benches' app upstream (bench/edge/run, bench/edge/callgrind),
# started as server "upstream": nginx with one worker on 127.0.0.1:PORT answering a fixed body
# on every path (/api, /healthz) and on /page and / DIR/page.html (the caller writes it), which a
# shared cache may keep for a minute (the page-cache workload; / as the app's home page, which
# the edge also looks for as the web root's index.html).
bench_edge_upstream() {
  local dir=$1 port=$2
  cat >"$dir/nginx.conf" <<CONF
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log;
daemon off;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $dir; proxy_temp_path $dir; fastcgi_temp_path $dir; uwsgi_temp_path $dir; scgi_temp_path $dir;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$port;
    location / { default_type text/plain; return 200 "hello from the upstream app\n"; }
    location = /page { default_type text/html; add_header Cache-Control "public, max-age=60"; alias $dir/page.html; }
    location = / { default_type text/html; add_header Cache-Control "public, max-age=60"; root $dir; try_files /page.html =404; }
  }
}
CONF
  bench_start upstream "$dir/out.log" nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log"
}

# bench_cleanup: TERM to each session leader (servers reap their own children), KILL to what is
# left of each session after 5 s; then no process of any session may remain. Runs from the EXIT
# trap under set -e: nothing here may fail.
bench_cleanup() {
  local sid pid alive left=""
  for sid in "${BENCH_SIDS[@]}"; do kill -TERM "$sid" 2>/dev/null || true; done
  for _ in $(seq 50); do
    alive=0
    for sid in "${BENCH_SIDS[@]}"; do [[ -z $(bench_sid_pids "$sid") ]] || alive=1; done
    ((alive)) || break
    sleep 0.1
  done
  for sid in "${BENCH_SIDS[@]}"; do
    for pid in $(bench_sid_pids "$sid"); do kill -KILL "$pid" 2>/dev/null || true; done
  done
  wait 2>/dev/null || true
  sleep 0.1
  for sid in "${BENCH_SIDS[@]}"; do left+=$(bench_sid_pids "$sid" | tr '\n' ' '); done
  [[ -z ${left// /} ]] || echo "bench: processes left running: $left" >&2
  local dir
  for dir in "${BENCH_CAP[@]}"; do rmdir "$dir" 2>/dev/null || echo "bench: cgroup $dir is left (processes in it)" >&2; done
  return 0
}
