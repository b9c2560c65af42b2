#!/usr/bin/env bash
# Runs each fuzz target on its committed corpus for a bounded time.
#
#   bash fuzz/run.sh               # 10 s per target (what CI runs)
#   bash fuzz/run.sh 600           # a longer run: 10 minutes per target
#   bash fuzz/run.sh 60 locations  # one target
#   FUZZ_RUNS=40000 FUZZ_SEED=1 bash fuzz/run.sh   # a fixed, reproducible exploration (CI)
#
# With FUZZ_RUNS (and FUZZ_SEED), each target runs that many inputs from that seed instead of
# for a time: the same inputs on every machine, so a CI run fails only on a real regression
# and fails the same way everywhere. Timed runs explore at random, to find new bugs.
#
# The toolchain is stable: cargo-fuzz's nightly flags are allowed with RUSTC_BOOTSTRAP=1.
# New inputs go to a temporary directory, so the committed corpus (fuzz/corpus/<target>)
# stays as it is; a crash is saved in fuzz/artifacts/<target>/ and fails the script
# (reproduce with `cargo fuzz run <target> <file>`).
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-10}
shift || true
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
  timeout 900 cargo install cargo-fuzz --locked
fi
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo fuzz list)
fi
if [ $# -eq 0 ]; then
  cargo fuzz build
else
  for target in "${targets[@]}"; do cargo fuzz build "$target"; done
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for target in "${targets[@]}"; do
  mkdir -p "$work/$target" "artifacts/$target"
  if [ -n "${FUZZ_RUNS:-}" ]; then
    budget=(-runs="$FUZZ_RUNS" -seed="${FUZZ_SEED:-1}" -max_total_time=120)
  else
    budget=(-max_total_time="$seconds")
  fi
  if ! cargo fuzz run "$target" "$work/$target" "corpus/$target" -- \
    "${budget[@]}" -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="artifacts/$target/" -print_final_stats=1 >"$work/$target.log" 2>&1; then
    tail -n 60 "$work/$target.log"
    echo "fuzz target $target failed; the input is in fuzz/artifacts/$target/" >&2
    exit 1
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$target.log")
  new=$(sed -n 's/^stat::new_units_added: *//p' "$work/$target.log")
  echo "fuzz $target: ${runs:-?} runs, ${new:-0} new inputs, no failure"
done
