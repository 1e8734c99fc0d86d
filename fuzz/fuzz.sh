#!/usr/bin/env bash
# Runs the cargo-fuzz targets on stable Rust, keeping the committed seeds clean.
#
#   fuzz/fuzz.sh list                         the targets
#   fuzz/fuzz.sh build                        build every target
#   fuzz/fuzz.sh run <target> [seconds] [libFuzzer options...]
#                                             fuzz one target (default 600 s); new inputs go to
#                                             fuzz/corpus-work/<target>, crashes to fuzz/artifacts/<target>
#   fuzz/fuzz.sh smoke [seconds]              every target for a short time (default 20 s) on its
#                                             committed seeds in a throwaway working corpus; exits 1
#                                             on the first crash (CI runs this)
#   fuzz/fuzz.sh replay <target> <file>...    run inputs once (a crash file, a corpus file)
#
# Environment: FUZZ_SANITIZER (default none; `address` needs RUSTC_BOOTSTRAP=1 on stable),
# CARGO_BUILD_JOBS (cargo's own, for the build). Needs cargo-fuzz (`cargo install cargo-fuzz --locked`).
set -euo pipefail
cd "$(dirname "$0")"

# fuzz-entry depends on sim, which refuses to build without --cfg tokio_unstable (see
# .cargo/config.toml). cargo-fuzz sets RUSTFLAGS itself, which hides the config's rustflags, but
# appends an env RUSTFLAGS to its own: so pass the cfg that way.
export RUSTFLAGS="--cfg tokio_unstable${RUSTFLAGS:+ $RUSTFLAGS}"
sanitizer=${FUZZ_SANITIZER:-none}
build_args=(--sanitizer "$sanitizer")
# Per input: 10 s at most (a hang is a finding), 2 GB of memory.
limits=(-timeout=10 -rss_limit_mb=2048)

targets() {
    cargo fuzz list
}

# Largest input to generate: libFuzzer's default (4096 bytes) would also cut longer seeds short
# (a genesis block is 18 KB, Fabric's core.yaml 34 KB).
max_len() {
    case "$1" in
    config_yaml) echo 65536 ;;
    genesis_block | gossip_envelope | signed_proposal) echo 32768 ;;
    block) echo 16384 ;;
    scenario_file) echo 8192 ;;
    *) echo 4096 ;;
    esac
}

# Seed directories of a target besides corpus/<target>: Fabric's own sample core.yaml, which
# must not be copied into the repository (../shared/fixtures/README.md), when it is there.
extra_seeds() {
    local fixture=../../shared/fixtures/fabric-v2.2.15
    if [[ "$1" == config_yaml && -d "$fixture" ]]; then
        echo "$fixture"
    fi
}

command=${1:-}
case "$command" in
list)
    targets
    ;;
build)
    cargo fuzz build "${build_args[@]}"
    ;;
run)
    target=${2:?usage: fuzz.sh run <target> [seconds] [libFuzzer options...]}
    seconds=${3:-600}
    shift $(( $# < 3 ? $# : 3 ))
    mkdir -p "corpus-work/$target"
    # shellcheck disable=SC2046
    cargo fuzz run "${build_args[@]}" "$target" "corpus-work/$target" "corpus/$target" $(extra_seeds "$target") -- \
        -max_len="$(max_len "$target")" -max_total_time="$seconds" "${limits[@]}" -print_final_stats=1 "$@"
    ;;
smoke)
    seconds=${2:-20}
    cargo fuzz build "${build_args[@]}"
    for target in $(targets); do
        work=$(mktemp -d)
        echo "== fuzz $target for ${seconds}s"
        # shellcheck disable=SC2046
        if ! cargo fuzz run "${build_args[@]}" "$target" "$work" "corpus/$target" $(extra_seeds "$target") -- \
            -max_len="$(max_len "$target")" -max_total_time="$seconds" "${limits[@]}" -print_final_stats=1 2>"$work.log"; then
            tail -n 60 "$work.log"
            echo "fuzz target $target failed; the input is in fuzz/artifacts/$target/ (replay: fuzz/fuzz.sh replay $target <file>)"
            exit 1
        fi
        grep -E '^stat::number_of_executed_units|^stat::peak_rss_mb|Done [0-9]+ runs' "$work.log" || true
        rm -rf "$work" "$work.log"
    done
    ;;
replay)
    target=${2:?usage: fuzz.sh replay <target> <file>...}
    shift 2
    cargo fuzz run "${build_args[@]}" "$target" "$@" -- "${limits[@]}"
    ;;
*)
    sed -n '2,17p' "$0"
    exit 2
    ;;
esac
