#!/usr/bin/env bash
# Installs what is missing, builds and runs the whole suite, exiting non-zero on any failure:
#   1. release build, warnings as errors, every test (ctest)
#   2. AddressSanitizer + UndefinedBehaviorSanitizer build, every test
#   3. ThreadSanitizer build, the tests of the concurrent parts (the ring buffer, the inputs'
#      threads, the outputs on the event loop, the OpAMP client, the status server)
#   4. lint: clang-format and clang-tidy
# CISTERN_TEST_STAGES picks stages (default "release asan tsan lint").
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/bootstrap.sh

stages=${CISTERN_TEST_STAGES:-release asan tsan lint}
jobs=$(nproc)
started=$(date +%s)

configure_and_build() {
  local dir=$1
  shift
  cmake -S . -B "$dir" -G Ninja -DCISTERN_WERROR=ON "$@" >/dev/null
  cmake --build "$dir" -j "$jobs"
}

run_ctest() {
  local dir=$1
  shift
  ctest --test-dir "$dir" --output-on-failure --timeout 900 -j 2 "$@"
}

for stage in $stages; do
  echo "=== test.sh: $stage ($(($(date +%s) - started))s elapsed)"
  case $stage in
    release)
      configure_and_build build/release -DCMAKE_BUILD_TYPE=RelWithDebInfo
      run_ctest build/release
      ;;
    asan)
      configure_and_build build/asan -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DCISTERN_SANITIZE=address,undefined -DCISTERN_BUILD_BENCH=OFF
      ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
        run_ctest build/asan
      ;;
    tsan)
      configure_and_build build/tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DCISTERN_SANITIZE=thread -DCISTERN_BUILD_BENCH=OFF
      TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 run_ctest build/tsan \
        -R '^(buffer_tests|ring_|capture_tests|transport_|heartbeat_|agent_tests)'
      ;;
    lint)
      [[ -f build/release/compile_commands.json ]] ||
        cmake -S . -B build/release -G Ninja -DCISTERN_WERROR=ON >/dev/null
      CISTERN_LINT_BUILD_DIR=build/release ./scripts/lint.sh
      ;;
    *)
      echo "unknown stage '$stage'" >&2
      exit 2
      ;;
  esac
done
echo "=== test.sh: all stages passed in $(($(date +%s) - started))s"
