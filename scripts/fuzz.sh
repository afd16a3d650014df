#!/usr/bin/env bash
# Runs each fuzz target (fuzz/fuzz_targets/) for a bounded time.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# SECONDS_PER_TARGET defaults to 60; the targets default to all of them.
# Each run starts from the committed corpus (fuzz/corpus/<target>/) and the
# hand-written seeds (fuzz/seeds/<target>/, plus the gateway's embedded
# default config for gateway_config). New inputs go to a scratch directory
# under the fuzz target dir, so the committed corpus only changes when asked:
# FUZZ_GROW=1 writes them into fuzz/corpus/<target>/ instead (then minimise
# with `cargo fuzz cmin <target>`). A crash leaves its input in
# fuzz/artifacts/<target>/ and makes the script fail, after every target ran.
#
# Needs cargo-fuzz (`cargo install --locked cargo-fuzz@0.13.1`). On a stable
# toolchain RUSTC_BOOTSTRAP=1 lets cargo-fuzz use -Zsanitizer; libFuzzer
# itself is built from source by libfuzzer-sys (a C++ compiler is needed).
# Env: FUZZ_TARGET_DIR (default fuzz/target), FUZZ_SANITIZER (default
# address; `none` builds faster), FUZZ_BUILD_FLAGS (below).
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${1:-60}"
shift || true
all=(check_path retry_after fan_out_target gateway_config admin_json)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")

export RUSTC_BOOTSTRAP=1
target_dir="${FUZZ_TARGET_DIR:-$PWD/fuzz/target}"
sanitizer="${FUZZ_SANITIZER:-address}"
fuzz=(cargo fuzz)
# FUZZ_BUILD_FLAGS: `--release` (default) builds optimised without debug
# assertions, the quicker build; `--debug-assertions` turns on overflow
# checks and debug assertions too (cargo-fuzz's own default).
read -r -a build_flags <<<"${FUZZ_BUILD_FLAGS:---release}"
opts=("${build_flags[@]}" --sanitizer "$sanitizer" --target-dir "$target_dir" --fuzz-dir fuzz)

echo "== building the fuzz targets (sanitizer: $sanitizer)"
start=$(date +%s)
"${fuzz[@]}" build "${opts[@]}"
echo "built in $(($(date +%s) - start)) s"

scratch="$target_dir/fuzz-scratch"
failed=()
for t in "${targets[@]}"; do
  corpus="fuzz/corpus/$t"
  mkdir -p "$corpus" "fuzz/artifacts/$t"
  dirs=()
  if [ "${FUZZ_GROW:-0}" = 1 ]; then
    dirs+=("$corpus")
  else
    rm -rf "${scratch:?}/$t"
    mkdir -p "$scratch/$t"
    dirs+=("$scratch/$t" "$corpus")
  fi
  [ -d "fuzz/seeds/$t" ] && dirs+=("fuzz/seeds/$t")
  if [ "$t" = gateway_config ]; then
    mkdir -p "$scratch/seeds-$t"
    cp crates/palisade-gateway/src/default.toml "$scratch/seeds-$t/default.toml"
    dirs+=("$scratch/seeds-$t")
  fi
  log="$target_dir/fuzz-$t.log"
  echo "== $t: ${secs} s (log: $log)"
  if "${fuzz[@]}" run "${opts[@]}" "$t" "${dirs[@]}" -- \
      -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="fuzz/artifacts/$t/" >"$log" 2>&1; then
    grep -E '^Done [0-9]+ runs|stat::number_of_executed_units|cov: .*corp:' "$log" | tail -2 || true
  else
    echo "!! $t failed; the end of its log:"
    tail -40 "$log"
    failed+=("$t")
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz targets that failed: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
  exit 1
fi
echo "fuzzing passed"
