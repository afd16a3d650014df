#!/usr/bin/env bash
# Instructions per call of the shard bench's rows, counted by callgrind:
# deterministic, so they show a change that timings on a busy machine
# cannot. Each row runs twice under callgrind, 10 000 and 30 000 calls on
# one thread; the difference over 20 000 is one call's cost, with divan's
# set-up and the process's start taken out. Clock reads are system calls
# under valgrind (it has no vDSO), so a row's count leaves out most of what
# a clock read costs: time those (`clock::*` in the bench).
#
# Usage: scripts/shard-instructions.sh [FILTER]   (a divan filter; default
# every row below)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || {
    echo "needs valgrind" >&2
    exit 1
}

bin=$(cargo bench -q -p palisade-benches --bench shard --no-run --message-format=json 2>/dev/null |
    sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1)
if [[ -z $bin || ! -x $bin ]]; then
    echo "could not build the shard bench binary" >&2
    exit 1
fi

if [[ $# -gt 0 ]]; then
    rows=("$@")
else
    rows=()
    for n in 3 16 256; do
        rows+=("rendezvous::hrw_hash::$n\$" "rendezvous::palisade_lookup::$n\$"
            "rendezvous::palisade_router_no_latency::$n\$" "rendezvous::palisade_router::$n\$"
            "ring::hashring::$n\$" "ring::palisade_lookup::$n\$"
            "ring::palisade_router_no_latency::$n\$" "ring::palisade_router::$n\$"
            "jump::jumpch::$n\$" "jump::palisade_lookup::$n\$"
            "jump::palisade_router_no_latency::$n\$" "jump::palisade_router::$n\$"
            "jump::palisade_router_cloned_no_latency::$n\$" "jump::palisade_router_cloned::$n\$"
            "steer::tower_steer::$n\$")
    done
    rows+=('steer::identity$' 'key::text$' 'key::integer$')
fi

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
total() { grep -E '^(summary|totals):' "$1" | head -1 | awk '{print $2}'; }
for row in "${rows[@]}"; do
    for n in 1 3; do
        valgrind --tool=callgrind --callgrind-out-file="$out/$n" "$bin" --bench "$row" \
            --threads 1 --sample-count $((n * 100)) --sample-size 100 >/dev/null 2>&1
    done
    printf '%-52s %8d\n' "$row" $((($(total "$out/3") - $(total "$out/1")) / 20000))
done
