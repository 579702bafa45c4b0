#!/usr/bin/env bash
# clang-format (no changes allowed) and clang-tidy (no findings allowed) over the project's
# C++ sources. Needs a configured build directory with compile_commands.json (default:
# build/release, which scripts/test.sh creates). `scripts/lint.sh --fix` rewrites formatting.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${CISTERN_LINT_BUILD_DIR:-build/release}
mapfile -t sources < <(git ls-files '*.cpp' '*.h' | grep -vE '^(build|third_party)/')

if [[ ${1:-} == --fix ]]; then
  clang-format -i "${sources[@]}"
  echo "lint: formatted ${#sources[@]} files"
  exit 0
fi

echo "lint: clang-format on ${#sources[@]} files"
clang-format --dry-run -Werror "${sources[@]}"

if [[ ! -f $build_dir/compile_commands.json ]]; then
  echo "lint: $build_dir/compile_commands.json missing; configure first" >&2
  exit 1
fi
# Sources include headers protoc generates at build time: make them first.
cmake --build "$build_dir" --target cistern_transport_proto cistern_heartbeat_proto >/dev/null
mapfile -t units < <(printf '%s\n' "${sources[@]}" | grep '\.cpp$')
echo "lint: clang-tidy on ${#units[@]} translation units"
# run-clang-tidy runs one process per core and exits non-zero on any finding.
run-clang-tidy -quiet -p "$build_dir" -j "$(nproc)" "${units[@]/#/$PWD/}" >/tmp/cistern-tidy.log 2>&1 || {
  grep -E 'warning:|error:' /tmp/cistern-tidy.log | sort -u | head -50
  echo "lint: clang-tidy found problems (full log: /tmp/cistern-tidy.log)" >&2
  exit 1
}
echo "lint: clean"
