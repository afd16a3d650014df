#!/usr/bin/env bash
# The retry layer's HTTP fast path against tower's Retry, as a median over
# many processes of the bench binary.
#
# Within one process the ratio is stable; between processes it moves by tens
# of percent, because each process gets its own address-space layout. So the
# figure to read is the median of per-process ratios, each process timing
# ours and tower's in the same run.
#
# Usage: scripts/retry-fast-path-ratio.sh [PROCESSES]   (default 21)
#
# Prints one line per process, then the medians over processes: ours / tower's
# Retry with a clone-and-never-retry policy, and ours / tower's Retry with its
# TpsBudget, for a GET (no body) and a PUT (1 KiB body); then each variant's
# median time per call.
set -euo pipefail

processes=${1:-21}
case $processes in
'' | *[!0-9]* | 0)
    echo "usage: $0 [PROCESSES]  (a positive number, default 21)" >&2
    exit 2
    ;;
esac
cd "$(dirname "$0")/.."

bin=$(cargo bench -q -p palisade-benches --bench retry --no-run --message-format=json 2>/dev/null |
    sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1)
if [[ -z $bin || ! -x $bin ]]; then
    echo "could not build the retry bench binary" >&2
    exit 1
fi

filter='fast_path_http::(ok200|tower_retry|tower_retry_tps_budget|palisade_http|palisade_http_one_attempt)::'
ratios=$(mktemp)
times=$(mktemp)
trap 'rm -f "$ratios" "$times"' EXIT

# Divan prints a tree: a benchmark's name on a line of its own, then one line
# per argument: the argument, then fastest, slowest, median, ... Prints
# "benchmark argument median-in-ns" for each argument line.
medians() {
    awk '
        function ns(v, u) {
            if (u == "ps") return v / 1000
            if (u == "µs" || u == "us") return v * 1000
            if (u == "ms") return v * 1000000
            if (u == "s") return v * 1000000000
            return v
        }
        {
            gsub(/│|├|╰|─/, " ")
            if ($0 ~ /^ *[a-z0-9_]+ *$/) { bench = $1; next }
            if (NF >= 7 && $2 ~ /^[0-9.]+$/ && $3 ~ /^(ps|ns|µs|us|ms|s)$/) print bench, $1, ns($6, $7)
        }'
}

echo "process  GET ours/tower  ours/tower+TpsBudget   PUT ours/tower  ours/tower+TpsBudget"
for i in $(seq "$processes"); do
    "$bin" --bench --sample-count 3000 "$filter" 2>/dev/null | medians | tee -a "$times" | awk -v i="$i" '
        { t[$1 " " $2] = $3 }
        END {
            g1 = t["palisade_http get"] / t["tower_retry get"]
            g2 = t["palisade_http get"] / t["tower_retry_tps_budget get"]
            p1 = t["palisade_http put_1k"] / t["tower_retry put_1k"]
            p2 = t["palisade_http put_1k"] / t["tower_retry_tps_budget put_1k"]
            printf "%7d  %14.3f  %20.3f  %14.3f  %20.3f\n", i, g1, g2, p1, p2
        }' | tee -a "$ratios"
done

median() {
    sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
printf "median   %14.3f  %20.3f  %14.3f  %20.3f   (%d processes)\n" \
    "$(awk '{ print $2 }' "$ratios" | median)" \
    "$(awk '{ print $3 }' "$ratios" | median)" \
    "$(awk '{ print $4 }' "$ratios" | median)" \
    "$(awk '{ print $5 }' "$ratios" | median)" \
    "$processes"

echo
echo "median time per call over the processes, ns:"
for variant in ok200 tower_retry tower_retry_tps_budget palisade_http palisade_http_one_attempt; do
    printf "  %-26s GET %7.1f   PUT %7.1f\n" "$variant" \
        "$(awk -v v="$variant" '$1 == v && $2 == "get" { print $3 }' "$times" | median)" \
        "$(awk -v v="$variant" '$1 == v && $2 == "put_1k" { print $3 }' "$times" | median)"
done
