#!/usr/bin/env bash
# Replays every trace in ../shared/traces through the editor path (plus raw Automerge
# and ropey), then sweeps the commit-coalescing window. Results go to benchmarks/.
# Usage: scripts/bench-replay.sh [--quick]   (--quick: traces only, no sweep)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p tandem-bench
bench=target/release/tandem-bench
out=benchmarks
mkdir -p "$out"

: > "$out/replay.jsonl"
for t in ../shared/traces/*.json.gz; do
    "$bench" replay "$t" --json --record "$out/replay.jsonl"
done

[ "${1:-}" = "--quick" ] && exit 0

# Coalescing: the paper trace's timestamps are synthetic (all within 0.3 s), so a
# typist at a steady 150 ms per keystroke drives it; seph-blog1 uses its own clock.
: > "$out/coalescing.jsonl"
for window in 0 100 300 1000; do
    for max in 500 2000 5000; do
        "$bench" replay ../shared/traces/automerge-paper.json.gz --json --no-baseline \
            --clock every:150 --idle-ms "$window" --max-ms "$max" --record "$out/coalescing.jsonl"
        "$bench" replay ../shared/traces/seph-blog1.json.gz --json --no-baseline \
            --idle-ms "$window" --max-ms "$max" --record "$out/coalescing.jsonl"
    done
done
