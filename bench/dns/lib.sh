#!/usr/bin/env bash
# Sourced by bench/dns/run and bench/dns/syscalls (after bench/lib.sh): the DNS benchmark's
# servers and queries, set up the same way by both. They use the caller's `work` (its scratch
# directory), `workers` (server threads), `clients` (dnsperf -c), `dnssec` (1: signed zones),
# `port` (an associative array, NAME → port) and `me` (the name errors start with).
# shellcheck disable=SC2034,SC2154 # those variables are the caller's

# dns_start NAME PORT CMD...: pinned, in its own session; waits until it answers over UDP and TCP.
dns_start() {
  local name=$1 p=$2
  shift 2
  port[$name]=$p
  bench_start "$name" "$work/$name.log" "$@"
  for _ in $(seq 100); do
    if dig +short +tries=1 +time=1 @127.0.0.1 -p "$p" www.foobar.com A 2>/dev/null | grep -q . &&
       dig +tcp +short +tries=1 +time=1 @127.0.0.1 -p "$p" www.foobar.com A 2>/dev/null | grep -q .; then
      return
    fi
    [[ -n $(bench_pids "$name") ]] || break
    sleep 0.2
  done
  echo "$me: $name did not start; its log:" >&2
  tail -20 "$work/$name.log" >&2
  exit 1
}

# dns_onebox_config FILE STATE_DIR: onebox-dns's site file (the baseline binary's too, with a
# state directory of its own): a UDP socket per worker, rate limiting on at a rate the benchmark
# never reaches, a TCP per-client cap above CLIENTS; with DNSSEC, both zones signed by it.
dns_onebox_config() {
  cat >"$1" <<CONF
[site]
domain = "foobar.com"

[dns]
udp_sockets = $workers
rrl_responses_per_sec = 1000000
tcp_max_connections_per_client = $((clients + 16))
CONF
  if ((dnssec)); then
    echo "state_dir = \"$2\"" >>"$1"
    for z in foobar.com bench.test; do
      printf '\n[[dns.zone]]\nname = "%s"\ndnssec = true\nallow_transfer = ["127.0.0.1"]\n' "$z" >>"$1"
    done
  fi
}

# dns_batch_wait FILE: ONEBOX_UDP_BATCH_WAIT_US, if set, as [dns] udp_batch_wait_us in FILE (for
# onebox only, not the baseline: an older binary may not know the key). Unset: its default.
dns_batch_wait() {
  [[ -z ${ONEBOX_UDP_BATCH_WAIT_US:-} ]] || sed -i "/^\[dns\]/a udp_batch_wait_us = $ONEBOX_UDP_BATCH_WAIT_US" "$1"
}

# dns_knot_config DIR PORT ZONEDIR: Knot's configuration in DIR/knot.conf, serving ZONEDIR's
# zones on 127.0.0.1@PORT with `workers` UDP and TCP workers.
dns_knot_config() {
  cat >"$1/knot.conf" <<CONF
server:
  rundir: "$1"
  pidfile: "$1/knot.pid"
  listen: 127.0.0.1@$2
  udp-workers: $workers
  tcp-workers: $workers
  background-workers: 1
log:
  - target: stderr
    any: warning
database:
  storage: "$1/db"
control:
  listen: "$1/knot.sock"
template:
  - id: default
    storage: "$3"
    zonefile-sync: -1
    journal-content: none
zone:
  - domain: foobar.com
    file: foobar.com.zone
  - domain: bench.test
    file: bench.test.zone
CONF
}

# dns_querymix FILE LINES SEED: the mix, LINES lines, a fresh random label on every NXDOMAIN line.
dns_querymix() {
  awk -v n="$2" -v seed="$3" 'BEGIN { srand(seed)
    for (i = 0; i < n; i++) { r = i % 20
      if (r < 15) print "www.foobar.com A"
      else if (r < 17) print "foobar.com A"
      else if (r == 17) print "bench.test MX"
      else printf "%08x%04x.bench.test A\n", int(rand() * 4294967296), int(rand() * 65536) } }' >"$1"
}

# The CPU time of the exchange as a whole (bench/dns/run's CPU runs): besides the server's own,
# dnsperf's and the kernel's softirq threads'. On loopback the sending task runs the receiving
# side of each packet (softirq: TCP/UDP input, waking the reader) on its own CPU time, or leaves
# it to ksoftirqd/N when there is too much; summing all three counts it once whoever runs it.
# dns_softirq_pids LIST: the pids of ksoftirqd/N for each CPU N of the taskset list LIST.
dns_softirq_pids() {
  local want
  want=" $(bench_expand "$1") "
  ps -e -o pid=,comm= | awk -v want="$want" '$2 ~ /^ksoftirqd\/[0-9]+$/ {
      n = substr($2, 11); if (index(want, " " n " ")) print $1 }' | tr '\n' ' '
}
# dns_children_ticks: "total user" CPU time of the children the calling (sub)shell has waited
# for (cutime + cstime, and cutime: a command's process, all its threads, once it has ended), in
# clock ticks.
dns_children_ticks() {
  local line rest f
  read -r line <"/proc/$BASHPID/stat"
  rest=${line##*) }
  read -ra f <<<"$rest"
  echo $((f[13] + f[14])) "${f[13]}"
}
