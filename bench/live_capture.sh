#!/usr/bin/env bash
# Live capture, Cistern against tcpdump -w, at increasing packet rates.
#
# Two network namespaces joined by a veth pair; tcpreplay sends synthetic Ethernet/IPv4/UDP
# frames (written by `cistern-bench capture --generate-only`) from one side at each rate, and the
# other side captures them, first with `cistern run` (a pcap input on the veth, a fresh data dir,
# sync: batch unless --sync), then with `tcpdump -w` to a file on the same disk, the same number
# of packets at the same rate. Both use a 32 MiB kernel ring; snaplen 128 for 64-byte frames, the whole frame
# for 1514-byte ones.
#
# One after the other rather than both at once on the same interface: the machine this runs on
# has two cores, and the generator needs one. Two capturers at once would compete with each other
# for the second core, so the drops would measure the scheduler rather than either capturer.
#
# Per rate it prints: packets sent (tcpreplay), packets that reached the capturing interface
# (its rx counter), and per capturer the kernel's received and dropped counts and what was
# captured (and for Cistern, stored in the buffer). Bounded in time (about 2 x rates x sizes x
# (seconds + 3) s); the namespaces, the veth and the files are removed on every exit path.
#
# Usage: bench/live_capture.sh [--build DIR] [--seconds N] [--rates "50000 ... max"]
#                              [--sizes "64 1514"] [--sync MODE] [--ingest-max SIZE]
#                              [--commit-max SIZE] [--dir DIR]
# --sync, --ingest-max and --commit-max set Cistern's buffer.sync (default batch),
# buffer.ingest_max_bytes and buffer.commit_max_bytes (default: the agent's).
# Needs root, ip(8), tcpreplay, tcpdump, and a build with agent/cistern and bench/cistern-bench.
set -euo pipefail

build=build/release
seconds=4
rates="50000 100000 200000 500000 max"
sizes="64 1514"
base=${TMPDIR:-/var/tmp}
ingest_max=
commit_max=
sync_mode="batch"
while (($# > 0)); do
  case $1 in
    --build) build=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --rates) rates=$2; shift 2 ;;
    --sizes) sizes=$2; shift 2 ;;
    --ingest-max) ingest_max=$2; shift 2 ;;
    --commit-max) commit_max=$2; shift 2 ;;
    --sync) sync_mode=$2; shift 2 ;;
    --dir) base=$2; shift 2 ;;
    -h | --help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "live_capture: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

cistern=$build/agent/cistern
bench=$build/bench/cistern-bench
for tool in ip tcpreplay tcpdump; do
  command -v "$tool" >/dev/null || { echo "live_capture: $tool is not installed" >&2; exit 2; }
done
for bin in "$cistern" "$bench"; do
  [[ -x $bin ]] || { echo "live_capture: $bin not found (build first, or give --build)" >&2; exit 2; }
done
if [[ $(id -u) -ne 0 ]]; then
  echo "live_capture: needs root (network namespaces, packet capture)" >&2
  exit 2
fi

# Names carry the PID, so runs never collide; leftovers of runs that were killed -9 (their PID
# is gone) are removed first, which makes the script safe to run again after anything.
for ns in $(ip netns list | awk '$1 ~ /^clc[ab]-[0-9]+$/ {print $1}'); do
  pid=${ns#clc?-}
  if ! kill -0 "$pid" 2>/dev/null; then ip netns del "$ns" 2>/dev/null || true; fi
done

ns_a=clca-$$
ns_b=clcb-$$
veth_a=clva$$
veth_b=clvb$$
work=$(mktemp -d "$base/cistern-live.XXXXXX")
capture_pid=
sender_pid=
cleanup() {
  for pid in $capture_pid $sender_pid; do kill -KILL "$pid" 2>/dev/null || true; done
  # Deleting a namespace destroys its end of the veth, and with it the peer.
  ip netns del "$ns_a" 2>/dev/null || true
  ip netns del "$ns_b" 2>/dev/null || true
  ip link del "$veth_a" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip netns add "$ns_a"
ip netns add "$ns_b"
# No IPv6 in the namespaces: its neighbour discovery would add packets nobody sent.
for ns in "$ns_a" "$ns_b"; do
  ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
done
ip link add "$veth_a" type veth peer name "$veth_b"
ip link set "$veth_a" netns "$ns_a"
ip link set "$veth_b" netns "$ns_b"
ip -n "$ns_a" link set "$veth_a" up
ip -n "$ns_b" link set "$veth_b" up
for _ in $(seq 50); do
  ip -n "$ns_b" -o link show "$veth_b" | grep -q LOWER_UP && break
  sleep 0.1
done

# The kernel's per-CPU backlog drops (/proc/net/softnet_stat, second column): packets a veth
# could not hand to the receive path, lost before any capture socket sees them.
backlog_drops() {
  local total=0 v
  while read -r _ v _; do total=$((total + 16#$v)); done </proc/net/softnet_stat
  echo "$total"
}
rx_packets() {
  ip -n "$ns_b" -s -j link show "$veth_b" | grep -o '"rx":{[^}]*' | grep -o '"packets":[0-9]*' |
    cut -d: -f2
}
json_field() { grep -o "\"$1\":[0-9]*" "$2" | head -n1 | cut -d: -f2; }

# Sends at a rate ("max": as fast as tcpreplay goes, for the given seconds) and sets `sent_pps`
# to "sent achieved_pps". tcpreplay runs in the background so that a signal interrupts `wait`
# and the exit trap stops it at once.
send() {
  local rate=$1 pcap=$2 out=$work/tcpreplay.out
  local pace=(--topspeed --duration="$seconds")
  if [[ $rate != max ]]; then pace=(--pps="$rate" --limit=$((rate * seconds))); fi
  ip netns exec "$ns_a" tcpreplay -q -i "$veth_a" -K --loop=0 "${pace[@]}" "$pcap" >"$out" 2>&1 &
  sender_pid=$!
  wait "$sender_pid" || true
  sender_pid=
  local sent pps
  sent=$(sed -n 's/^Actual: \([0-9]*\) packets.*/\1/p' "$out")
  pps=$(sed -n 's/^Rated: .*, \([0-9.]*\) pps.*/\1/p' "$out")
  sent_pps="${sent:-0} ${pps%.*}"
}

# measure RATE PCAP OUT LOG READY SIGNAL COMMAND...: starts the capturer COMMAND (stdout to OUT,
# stderr to LOG) in namespace B, waits (at most 10 s) until LOG shows READY, sends, lets it drain what the kernel
# still holds (block timeouts are 100 ms or less), stops it with SIGNAL and sets `measured` to
# "sent pps if_rx backlog_drops". Runs in this shell, not in a $(...) subshell, so that the exit
# trap knows the capturer's PID.
measure() {
  local rate=$1 pcap=$2 out=$3 log=$4 ready=$5 signal=$6
  shift 6
  ip netns exec "$ns_b" "$@" >"$out" 2>"$log" &
  capture_pid=$!
  local started=0
  for _ in $(seq 100); do
    if grep -q "$ready" "$log" 2>/dev/null; then started=1; break; fi
    kill -0 "$capture_pid" 2>/dev/null || break
    sleep 0.1
  done
  if ((started == 0)); then
    echo "live_capture: the capturer did not start ($*):" >&2
    cat "$log" >&2
    exit 1
  fi
  local rx0 bl0
  rx0=$(rx_packets)
  bl0=$(backlog_drops)
  send "$rate" "$pcap"
  sleep 1
  kill "-$signal" "$capture_pid"
  wait "$capture_pid" || true
  capture_pid=
  measured="$sent_pps $(($(rx_packets) - rx0)) $(($(backlog_drops) - bl0))"
}

# One capture run each; they set `result` to "sent pps if_rx backlog_drops received captured
# dropped_kernel dropped_agent stored".
run_cistern() {
  local rate=$1 snaplen=$2 pcap=$3 dir=$work/cistern
  rm -rf "$dir"
  mkdir -p "$dir"
  cat >"$dir/cistern.yaml" <<YAML
agent:
  data_dir: $dir/data
log:
  level: info
buffer:
  max_size: 1GiB
  sync: $sync_mode
${ingest_max:+  ingest_max_bytes: $ingest_max}
${commit_max:+  commit_max_bytes: $commit_max}
inputs:
  - type: pcap
    name: veth
    interface: $veth_b
    snaplen: $snaplen
    buffer_size: 32MiB
YAML
  # At exit, cistern run prints its counters as one JSON line on stdout.
  measure "$rate" "$pcap" "$dir/report.json" "$dir/log" "running:" TERM \
    "$cistern" run -c "$dir/cistern.yaml"
  local r=$dir/report.json
  result="$measured $(json_field packets_received "$r") $(json_field packets_captured "$r")"
  result+=" $(json_field packets_dropped_kernel "$r") $(json_field packets_dropped_agent "$r")"
  result+=" $(json_field packets_stored "$r")"
  rm -rf "$dir"
}

run_tcpdump() {
  local rate=$1 snaplen=$2 pcap=$3 dir=$work/tcpdump
  rm -rf "$dir"
  mkdir -p "$dir"
  # -B is in KiB: the same 32 MiB ring as Cistern's. Writes are buffered (no -U), tcpdump's
  # default.
  measure "$rate" "$pcap" /dev/null "$dir/log" "listening on" INT \
    tcpdump -n -i "$veth_b" -s "$snaplen" -B 32768 -w "$dir/out.pcap"
  local captured received dropped
  captured=$(sed -n 's/^\([0-9]*\) packets\{0,1\} captured.*/\1/p' "$dir/log")
  received=$(sed -n 's/^\([0-9]*\) packets\{0,1\} received by filter.*/\1/p' "$dir/log")
  dropped=$(sed -n 's/^\([0-9]*\) packets\{0,1\} dropped by kernel.*/\1/p' "$dir/log")
  result="$measured ${received:-?} ${captured:-?} ${dropped:-?} - -"
  rm -rf "$dir"
}

echo "live capture: veth $veth_a ($ns_a) -> $veth_b ($ns_b), $seconds s per rate, rates: $rates"
echo "  cistern: buffer.sync $sync_mode, buffer.ingest_max_bytes ${ingest_max:-default (16MiB)}, buffer.commit_max_bytes ${commit_max:-default (4MiB)}"
echo "  load average at start: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) cores)"
echo "  columns: sent = tcpreplay's count; pps = its achieved rate; if_rx = packets the capturing"
echo "  interface received; backlog = kernel backlog drops before capture; received/kernel_drop ="
echo "  the capture socket's counters; captured = handed to the program; stored = in Cistern's"
echo "  buffer; lost = sent - stored (Cistern) or sent - captured (tcpdump)"
row='%-5s %-7s %-8s %9s %8s %9s %8s %9s %9s %11s %10s %9s %9s\n'
# shellcheck disable=SC2059  # the format is the variable, on purpose
printf "$row" size rate capturer sent pps if_rx backlog received captured kernel_drop agent_drop \
  stored lost
for size in $sizes; do
  pcap=$work/frames-$size.pcap
  "$bench" capture --generate 100000 --packet-size "$size" --pcap "$pcap" --generate-only >/dev/null
  snaplen=262144
  if ((size <= 128)); then snaplen=128; fi
  for rate in $rates; do
    for capturer in cistern tcpdump; do
      "run_$capturer" "$rate" "$snaplen" "$pcap"
      read -r sent pps if_rx backlog received captured kdrop adrop stored <<<"$result"
      kept=$stored
      if [[ $capturer == tcpdump ]]; then kept=$captured; fi
      lost='?'
      if [[ $kept =~ ^[0-9]+$ ]]; then lost=$((sent - kept)); fi
      # shellcheck disable=SC2059
      printf "$row" "$size" "$rate" "$capturer" "$sent" "$pps" "$if_rx" "$backlog" "$received" \
        "$captured" "$kdrop" "$adrop" "$stored" "$lost"
    done
  done
  rm -f "$pcap"
done
echo "  load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
