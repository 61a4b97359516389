#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ for a bounded time (default 60 s each),
# starting from the seeds committed under fuzz/corpus/<target>/, and fails on
# any crash, panic, sanitizer report or timeout. New corpus entries go to a
# scratch directory, never into the repository; a crashing input is left in
# fuzz/artifacts/<target>/ (ignored by git).
#
#   scripts/fuzz.sh            # 60 s per target
#   scripts/fuzz.sh 10         # 10 s per target
#   scripts/fuzz.sh 60 key_json
#
# cargo fuzz builds with nightly-only flags (-Zsanitizer=address and friends).
# The machines this project runs on have only the stable toolchain, so the
# stable compiler is told to accept them with RUSTC_BOOTSTRAP=1 (set
# FUZZ_TOOLCHAIN=nightly to use an installed nightly instead). cargo-fuzz itself
# comes from crates.io (`cargo install cargo-fuzz --locked`) when missing;
# libFuzzer is built from source by the libfuzzer-sys crate.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(sops_parse manifest key_json)

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi
toolchain=()
if [ -n "${FUZZ_TOOLCHAIN:-}" ]; then
    toolchain=("+$FUZZ_TOOLCHAIN")
else
    export RUSTC_BOOTSTRAP=1
fi

echo "fuzz: building the targets (AddressSanitizer, release)" >&2
cargo "${toolchain[@]}" fuzz build --fuzz-dir fuzz

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
summary=()
for t in "${targets[@]}"; do
    mkdir -p "$scratch/$t"
    log="$scratch/$t.log"
    echo "fuzz: $t for ${secs}s" >&2
    if ! cargo "${toolchain[@]}" fuzz run --fuzz-dir fuzz "$t" "$scratch/$t" "fuzz/corpus/$t" -- \
        -max_total_time="$secs" -max_len=16384 -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 >"$log" 2>&1; then
        tail -n 60 "$log" >&2
        echo "fuzz: $t FAILED; the input is in fuzz/artifacts/$t/" >&2
        exit 1
    fi
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    corpus=$(find "$scratch/$t" -type f | wc -l)
    summary+=("$t: ${runs:-?} executions in ${secs}s, $corpus new corpus entries, no crash")
done
printf 'fuzz: %s\n' "${summary[@]}"
