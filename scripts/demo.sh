#!/usr/bin/env bash
# The main job, on an embedded default: installs what is missing, builds, then
#   1. checks the packaged config,
#   2. runs the buffer benchmark: records through the LMDB ring's writer, read back by two
#      consumers (one acknowledges, one does not), against raw disk writes in the same run,
#   3. inspects and verifies the ring the benchmark left behind.
# Capture and delivery join this demo as they are built.
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
