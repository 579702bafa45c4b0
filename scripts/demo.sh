#!/usr/bin/env bash
# The main job, on an embedded default: installs what is missing, builds the agent and the
# benchmarks, then
#   1. checks the packaged config,
#   2. runs the buffer benchmark: records through the LMDB ring's writer, read back by two
#      consumers (one acknowledges, one does not), against raw disk writes in the same run,
#   3. inspects and 4. verifies the ring the benchmark left behind,
#   5. the outage story, in about 80 seconds on loopback: the agent captures a pcap replayed in
#      real time and a log file that keeps growing, and delivers both over OTLP to a receiver
#      (the npm mock from tests/peers) that is stopped for 25 seconds and started again, and to
#      a local file archive (pcapng and NDJSON). A view refreshed every second shows the OTLP
#      output's state (healthy, down, recovering), the backlog in the buffer, the drain rate
#      ramping up and what the receiver got; it ends with a summary: records captured = records
#      delivered to the receiver = records in the archive.
# Everything it starts is stopped and its temp dir removed on exit, also on Ctrl-C.
#
# Environment: CISTERN_DEMO_BUILD_DIR (default build/release), CISTERN_DEMO_RECORDS (buffer
# benchmark, default 500000), CISTERN_DEMO_OTLP_PORT (default: a free port in 20000-32767).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/bootstrap.sh
bin=${CISTERN_DEMO_BUILD_DIR:-build/release}
cmake -S . -B "$bin" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$bin" -j "$(nproc)" --target cistern cistern-bench

records=${CISTERN_DEMO_RECORDS:-500000}
work=$(mktemp -d "${TMPDIR:-/var/tmp}/cistern-demo.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

echo
echo "== 1. cistern check-config -c packaging/cistern.yaml"
"$bin/agent/cistern" check-config -c packaging/cistern.yaml

echo
echo "== 2. cistern-bench buffer: $records records of 200 bytes, sync batch"
"$bin/bench/cistern-bench" buffer --records "$records" --record-size 200 --sync batch \
  --repeat 1 --consumers 2 --ack-consumers 1 --keep --dir "$work"

ring=$work/buffer-run-0/ring
echo
echo "== 3. cistern buffer inspect --data-dir $ring"
"$bin/agent/cistern" buffer inspect --data-dir "$ring"
echo
echo "== 4. cistern buffer verify --data-dir $ring"
"$bin/agent/cistern" buffer verify --data-dir "$ring"
rm -rf "$work/buffer-run-0"

echo
echo "== 5. the outage story: capture, the receiver goes away, the backlog drains when it is back"
story=$work/story
mkdir -p "$story/logs"
# The receiver's port stays the same across its restart, so it is taken below the ephemeral
# range: a port from that range could meanwhile become the local port of the agent's own
# reconnection attempts (TCP self-connect on loopback).
otlp_port=${CISTERN_DEMO_OTLP_PORT:-$(python3 -c '
import random, socket
for _ in range(500):
    port = random.randint(20000, 32767)
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
        print(port)
        break')}
seconds=60       # how long the pcap and the log file are written
stop_at=15       # the receiver goes away...
back_at=40       # ...and comes back
# 25 packets/s for $seconds s, each UDP payload numbered, with timestamps 40 ms apart: replayed
# at the pace of its timestamps (replay: realtime) it is a live capture that lasts $seconds s.
python3 - "$story/tap.pcap" "$seconds" <<'PY'
import struct, sys, time
path, seconds = sys.argv[1], int(sys.argv[2])
t0 = int(time.time())
with open(path, "wb") as f:
    f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))  # Ethernet
    for i in range(seconds * 25):
        payload = b"demo packet %06d " % i + b"." * 60
        udp = struct.pack("!HHHH", 40000, 5514, 8 + len(payload), 0) + payload
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i & 0xFFFF, 0, 64, 17, 0,
                         bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1]))
        frame = b"\x00" * 12 + b"\x08\x00" + ip + udp
        ts = t0 * 1_000_000 + i * 40_000
        f.write(struct.pack("<IIII", ts // 1_000_000, ts % 1_000_000, len(frame), len(frame)))
        f.write(frame)
PY
cat >"$story/cistern.yaml" <<YAML
agent:
  id: demo-sensor
  data_dir: $story/data
log:
  level: info
status:
  listen: ""                   # no local status API: its default port may be in use here
buffer:
  max_size: 64MiB
  frame_max_bytes: 4KiB        # small frames: the drain's steps are visible
inputs:
  - type: pcap
    name: tap
    file: $story/tap.pcap
    replay: realtime
  - type: file
    name: app-log
    paths: ["$story/logs/app.log"]
    start_at: beginning
    poll_interval: 100ms
outputs:
  - type: otlp
    name: processor
    endpoints: ["http://127.0.0.1:$otlp_port"]
    retry_initial: 200ms
    retry_max: 1s
    heartbeat:
      interval: 2s             # probe a DOWN receiver every 2 s...
      max_interval: 4s         # ...backing off to 4 s
    drain:
      rate: 16KiB              # the backlog goes at 16 KiB/s of records...
      initial_percent: 10      # ...starting at 10 % of it...
      ramp: 6s                 # ...reaching it over 6 s; live data goes first, unlimited
  - type: file                 # a local archive: packets to pcapng, log lines to NDJSON
    name: archive
    path: $story/archive
YAML
echo "config ($story/cistern.yaml), outputs; the receiver listens on 127.0.0.1:$otlp_port:"
sed -n '/^outputs:/,$p' "$story/cistern.yaml"
"$bin/agent/cistern" check-config -c "$story/cistern.yaml" >/dev/null

receiver=
start_receiver() {
  node tests/peers/otlp_mock.js --port "$otlp_port" >>"$story/receiver.jsonl" \
    2>>"$story/receiver.err" &
  receiver=$!
  pids+=("$receiver")
  for _ in $(seq 1 200); do
    [[ $(grep -c '"listening"' "$story/receiver.jsonl" 2>/dev/null) -ge $1 ]] && break
    if ! kill -0 "$receiver" 2>/dev/null; then break; fi
    sleep 0.05
  done
  if [[ $(grep -c '"listening"' "$story/receiver.jsonl" 2>/dev/null) -lt $1 ]]; then
    echo "demo: the OTLP receiver did not start on 127.0.0.1:$otlp_port:" >&2
    cat "$story/receiver.err" >&2
    exit 1
  fi
  echo up >"$story/receiver.state"
}
stop_receiver() {
  kill "$receiver" 2>/dev/null || true
  wait "$receiver" 2>/dev/null || true
  echo down >"$story/receiver.state"
}
start_receiver 1
"$bin/agent/cistern" run -c "$story/cistern.yaml" --stats-interval 1 \
  >"$story/report.json" 2>"$story/agent.log" &
agent=$!
pids+=("$agent")
# The growing log file: 20 lines a second, on a fixed schedule.
python3 - "$story/logs/app.log" "$seconds" <<'PY' &
import sys, time
path, seconds = sys.argv[1], int(sys.argv[2])
start = time.time()
with open(path, "a") as log:
    for i in range(seconds * 20):
        time.sleep(max(0.0, start + i / 20 - time.time()))
        stamp = time.strftime("%H:%M:%S", time.gmtime())
        log.write(f"{stamp} app line {i:05d}: request served, status 200, {'x' * (40 + i % 60)}\n")
        log.flush()
PY
writer=$!
pids+=("$writer")

# The view: one line a second from the agent's stats lines (state, drain rate, bytes sent per
# lane), `cistern buffer inspect --json` (the backlog: records not yet acknowledged; read-only,
# safe beside the agent) and the receiver's output (records decoded). State changes are printed
# as they are logged, with their cause.
python3 - "$bin/agent/cistern" "$story" <<'PY' &
import json, os, re, subprocess, sys, time
cistern, story = sys.argv[1], sys.argv[2]
stats_re = re.compile(r"output=processor (.*records_sent=.*)")
change_re = re.compile(r"output=processor state (\S+ -> \S+: .*)")
start, seen_log, seen_rx, received = time.time(), 0, 0, 0
tty = sys.stdout.isatty()
print(f"{'time':>5} {'receiver':>8} {'state':>10} {'backlog':>16} {'drain rate':>12} "
      f"{'live sent':>10} {'backlog sent':>12} {'received':>9}")
def size(b):
    return f"{b / 1024:.0f} KiB" if b >= 1024 else f"{b} B"
while True:
    time.sleep(1)
    stats = {}
    with open(os.path.join(story, "agent.log"), errors="replace") as f:
        f.seek(seen_log)
        chunk = f.read()
        cut = chunk.rfind("\n") + 1
        seen_log += len(chunk[:cut].encode())
        for line in chunk[:cut].splitlines():
            m = change_re.search(line)
            if m:
                print(f"\r{'':>5} -- state {m.group(1)}" + ("\033[K" if tty else ""))
            m = stats_re.search(line)
            if m:
                # "state=healthy ... state=0": the number, logged last, wins.
                stats = dict(kv.split("=", 1) for kv in m.group(1).split() if "=" in kv)
    with open(os.path.join(story, "receiver.jsonl"), "rb") as f:
        f.seek(seen_rx)
        chunk = f.read()
        cut = chunk.rfind(b"\n") + 1
        seen_rx += cut
        for line in chunk[:cut].splitlines():
            event = json.loads(line)
            if event.get("event") == "logs":
                for rl in event["request"].get("resourceLogs", []):
                    for sl in rl.get("scopeLogs", []):
                        received += len(sl.get("logRecords", []))
    pending = "?"
    inspect = subprocess.run([cistern, "buffer", "inspect", "--data-dir",
                              os.path.join(story, "data"), "--json"],
                             capture_output=True, text=True)
    if inspect.returncode == 0:
        for c in json.loads(inspect.stdout).get("consumers", []):
            if c["name"] == "processor":
                pending = f"{c['pending_records']} records"
    state = {"0": "healthy", "1": "DOWN", "2": "recovering"}.get(stats.get("state"), "?")
    rate = int(stats.get("drain_rate", 0))
    with open(os.path.join(story, "receiver.state")) as f:
        rx = f.read().strip()
    line = (f"{time.time() - start:4.0f}s {rx:>8} {state:>10} {pending:>16} "
            f"{(size(rate) + '/s') if rate else '-':>12} "
            f"{size(int(stats.get('live_bytes_sent', 0))):>10} "
            f"{size(int(stats.get('backlog_bytes_sent', 0))):>12} {received:>9}")
    print(("\r" + line + "\033[K") if tty else line, end="" if tty else "\n", flush=True)
PY
view=$!
pids+=("$view")

# Sleeps in the background, so that Ctrl-C or a TERM stops the demo at once.
nap() {
  sleep "$1" &
  wait $!
}
nap "$stop_at"
echo -e "\n-- $(date +%T) the receiver goes away: capture goes on into the buffer"
stop_receiver
nap $((back_at - stop_at))
echo -e "\n-- $(date +%T) the receiver is back: live data first, the backlog ramps up"
start_receiver 2
wait "$writer" || true
# Everything is written; wait (at most 40 s) until the output acknowledged all of it.
for _ in $(seq 1 40); do
  pending=$("$bin/agent/cistern" buffer inspect --data-dir "$story/data" --json |
    python3 -c 'import json,sys; print(sum(c["pending_records"] for c in json.load(sys.stdin)["consumers"]))') ||
    pending=unknown
  [[ $pending == 0 ]] && break
  sleep 1
done
sleep 1
kill "$view" 2>/dev/null || true
wait "$view" 2>/dev/null || true
echo
kill -TERM "$agent"
wait "$agent" || true
stop_receiver

echo
echo "summary:"
python3 - "$story/report.json" "$story/receiver.jsonl" "$story/archive" <<'PY'
import glob, json, os, struct, sys
report = json.load(open(sys.argv[1]))
seen, copies = set(), 0
for line in open(sys.argv[2]):
    event = json.loads(line)
    if event.get("event") != "logs":
        continue
    for rl in event["request"].get("resourceLogs", []):
        for sl in rl.get("scopeLogs", []):
            for r in sl.get("logRecords", []):
                attrs = {a["key"]: a["value"] for a in r.get("attributes", [])}
                key = (json.dumps(attrs.get("cistern.input")), json.dumps(r.get("body")))
                copies += key in seen
                seen.add(key)
inputs = {i["name"]: i["counters"] for i in report["inputs"]}
captured = report["buffer"]["appended_records"]
out = next(o for o in report["outputs"] if o["name"] == "processor")
c = out["counters"]
print(f"captured into the buffer: {captured} records "
      f"({inputs['tap'].get('packets_stored')} packets, {inputs['app-log'].get('lines_stored')} "
      f"log lines)")
print(f"output processor: state {out.get('state')}, {c.get('state_changes')} state changes, "
      f"{c.get('down_ms', 0) / 1000:.1f} s down, {c.get('probes')} probes "
      f"({c.get('probes_failed')} failed), {c.get('pushbacks')} pushbacks")
print(f"  sent live {c.get('live_bytes_sent')} B and backlog {c.get('backlog_bytes_sent')} B of "
      f"records; acknowledged {c['records_acked']} records; still pending "
      f"{out['buffer']['pending_records']}")
print(f"the receiver decoded {len(seen)} distinct records ({copies} repeated copies: "
      f"at-least-once)")

def pcapng_packets(path):
    """Enhanced and simple packet blocks in a pcapng file."""
    count, data, pos, endian = 0, open(path, "rb").read(), 0, "<"
    while pos + 12 <= len(data):
        if data[pos:pos + 4] == b"\x0a\x0d\x0d\x0a":  # section header: its byte order
            endian = "<" if data[pos + 8:pos + 12] == b"\x4d\x3c\x2b\x1a" else ">"
        kind, length = struct.unpack(endian + "II", data[pos:pos + 8])
        if length < 12:
            break
        count += kind in (3, 6)
        pos += length
    return count

archive = sys.argv[3]
packets = sum(pcapng_packets(p) for p in glob.glob(os.path.join(archive, "*.pcapng")))
lines = sum(1 for p in glob.glob(os.path.join(archive, "*.ndjson")) for _ in open(p))
arch = next(o for o in report["outputs"] if o["name"] == "archive")
print(f"output archive: {arch['counters']['records_acked']} records acknowledged; "
      f"the archive held {packets} packets (pcapng) and {lines} log lines (NDJSON)")
ok = (captured == c["records_acked"] == len(seen) == packets + lines ==
      arch["counters"]["records_acked"] and out["buffer"]["pending_records"] == 0)
print(("records in = records delivered: " if ok else "MISMATCH: ") +
      f"{captured} captured, {c['records_acked']} acknowledged and {len(seen)} received over "
      f"OTLP, {packets + lines} archived")
sys.exit(0 if ok else 1)
PY
