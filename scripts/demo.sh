#!/usr/bin/env bash
# The main job, on an embedded default: installs what is missing, builds, then
#   1. checks the packaged config,
#   2. runs the buffer benchmark: records through the LMDB ring's writer, read back by two
#      consumers (one acknowledges, one does not), against raw disk writes in the same run,
#   3. inspects and verifies the ring the benchmark left behind,
#   4. runs the agent for a few seconds on an embedded config: live capture on the loopback
#      interface (root only), syslog over UDP sent with logger(1), and a tailed log file being
#      written and rotated, delivered to an OTLP receiver on loopback (the npm mock from
#      tests/peers, stopped for a while and started again mid-run) and to a local archive;
#      then prints its counters, what the receiver got, and exports what is still buffered.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/bootstrap.sh
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build/release -j "$(nproc)"

bin=build/release
records=${CISTERN_DEMO_RECORDS:-2000000}
work=$(mktemp -d "${TMPDIR:-/var/tmp}/cistern-demo.XXXXXX")
trap 'rm -rf "$work"' EXIT

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

echo
echo "== 5. cistern run: packets, syslog and a tailed file, delivered over OTLP and archived"
agent=$work/agent
mkdir -p "$agent/logs"
port=${CISTERN_DEMO_SYSLOG_PORT:-5514}
otlp_port=${CISTERN_DEMO_OTLP_PORT:-24318}
start_receiver() {
  node tests/peers/otlp_mock.js --port "$otlp_port" >>"$agent/receiver.jsonl" 2>/dev/null &
  receiver=$!
  for _ in $(seq 1 100); do
    grep -q '"listening"' "$agent/receiver.jsonl" 2>/dev/null && break
    sleep 0.05
  done
}
receiver=
trap 'rm -rf "$work"; [[ -n $receiver ]] && kill "$receiver" 2>/dev/null; true' EXIT
start_receiver
{
  cat <<YAML
agent:
  data_dir: $agent/data
log:
  level: info
buffer:
  max_size: 256MiB
inputs:
  - type: syslog
    name: syslog-udp
    listen: udp://127.0.0.1:$port
  - type: file
    name: app-log
    paths: ["$agent/logs/app.log*"]
    start_at: beginning
    poll_interval: 100ms
outputs:
  - type: otlp
    name: processor
    endpoints: ["http://127.0.0.1:$otlp_port"]
    retry_initial: 200ms
    retry_max: 1s
  - type: file
    name: archive
    path: $agent/archive
YAML
  if [[ $(id -u) -eq 0 ]]; then
    cat <<YAML
  - type: pcap
    name: loopback
    interface: lo
    filter: "udp port $port"
YAML
  fi
} >"$agent/cistern.yaml"
cat "$agent/cistern.yaml"
"$bin/agent/cistern" check-config -c "$agent/cistern.yaml" >/dev/null
"$bin/agent/cistern" run -c "$agent/cistern.yaml" --stats-interval 2 >"$agent/report.json" &
pid=$!
sleep 1
for i in $(seq 1 200); do
  echo "$(date -u +%FT%T.%NZ) app line $i" >>"$agent/logs/app.log"
  logger -n 127.0.0.1 -P "$port" -d --rfc5424 -t demo "syslog message $i" || true
  if ((i == 100)); then mv "$agent/logs/app.log" "$agent/logs/app.log.1"; fi
  if ((i == 60)); then
    echo "-- the OTLP receiver goes away (records keep being captured into the buffer)"
    kill "$receiver"
    wait "$receiver" 2>/dev/null || true
  fi
  if ((i == 160)); then
    echo "-- the OTLP receiver is back"
    start_receiver
  fi
  sleep 0.01
done
sleep 3
kill -TERM "$pid"
wait "$pid"
kill "$receiver" 2>/dev/null || true
echo
echo "counters:"
python3 -m json.tool "$agent/report.json" 2>/dev/null || cat "$agent/report.json"
echo
echo "summary:"
python3 - "$agent/report.json" "$agent/receiver.jsonl" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
got = 0
for line in open(sys.argv[2]):
    event = json.loads(line)
    if event.get("event") == "logs":
        for rl in event["request"].get("resourceLogs", []):
            for sl in rl.get("scopeLogs", []):
                got += len(sl.get("logRecords", []))
stored = report["buffer"]["appended_records"]
print(f"captured into the buffer: {stored} records")
for out in report["outputs"]:
    c = out["counters"]
    print(f"output {out['name']}: acknowledged {c['records_acked']}, failed requests "
          f"{c['requests_failed']} (retried {c['records_retried']} records), still pending "
          f"{out['buffer']['pending_records']}")
print(f"the OTLP receiver decoded {got} log records (at least once each; retries may repeat)")
PY

echo
echo "== 6. cistern buffer export --format ndjson (first lines of each input)"
"$bin/agent/cistern" buffer export --data-dir "$agent/data" --format ndjson --input app-log | head -n 2 || true
"$bin/agent/cistern" buffer export --data-dir "$agent/data" --format ndjson --input syslog-udp | head -n 2 || true
if [[ $(id -u) -eq 0 ]]; then
  echo
  echo "== 7. cistern buffer export --format pcapng, read by tshark"
  "$bin/agent/cistern" buffer export --data-dir "$agent/data" --format pcapng --input loopback \
    --output "$agent/loopback.pcapng"
  tshark -r "$agent/loopback.pcapng" 2>/dev/null | head -n 5 || true
fi
