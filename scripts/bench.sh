#!/usr/bin/env bash
# Runs the issue's benchmark set in one go and prints each figure with its
# ratio to the raw disk limits measured in the same run, as a Markdown table
# for docs/benchmarks.md. Usage: bash scripts/bench.sh [WORK_DIR]
# WORK_DIR (default: a new temporary directory) needs about 3 GB free.
set -euo pipefail
cd "$(dirname "$0")/.."
work="${1:-$(mktemp -d /var/tmp/rewind-bench.XXXXXX)}"
mkdir -p bin "$work"
go build -buildvcs=true -o bin/rewind ./cmd/rewind
rw() { bin/rewind "$@"; }
j() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
fresh() { rm -rf "$work/$1"; echo "$work/$1"; }

disk=$(rw bench disk --data-dir "$(fresh disk)" --json)
every=$(echo "$disk" | j "['sync_every_1000_rps']")
each=$(echo "$disk" | j "['sync_each_rps']")
readraw=$(echo "$disk" | j "['read_rps']")

a1=$(rw bench append --data-dir "$(fresh a1)" --writers 64 --batch 100 --events 10000000 --size 128 --durability sync --json)
a2=$(rw bench append --data-dir "$(fresh a2)" --writers 64 --batch 1 --events 1000000 --size 128 --durability sync --json)
a3=$(rw bench append --data-dir "$(fresh a3)" --writers 1 --batch 1 --events 5000 --size 128 --durability sync --json)
r1=$(rw bench read --data-dir "$(fresh r1)" --events 10000000 --streams 1000000 --json)
rm -rf "$work"/a1 "$work"/a2 "$work"/a3 "$work"/disk

ratio() { python3 -c "print(f'{$1/$2:.2f}')"; }
cat <<TABLE
Raw disk (same run): sync_every_1000_rps $every, sync_each_rps $each, read_rps $readraw.

| benchmark | figure | target | ratio to reference |
|---|---|---|---|
| sync, 64 writers, batch 100 | $(echo "$a1" | j "['events_per_sec']") events/s (p50 $(echo "$a1" | j "['p50_us']") µs, p99 $(echo "$a1" | j "['p99_us']") µs, mean group $(echo "$a1" | j "['mean_group_commit_events']") events) | ≥ 1,000,000/s and ≥ 0.8 × sync_every_1000 | $(ratio "$(echo "$a1" | j "['events_per_sec']")" "$every") × sync_every_1000 |
| sync, 64 writers, batch 1 | $(echo "$a2" | j "['events_per_sec']") events/s (p50 $(echo "$a2" | j "['p50_us']") µs, p99 $(echo "$a2" | j "['p99_us']") µs, mean group $(echo "$a2" | j "['mean_group_commit_events']") events) | ≥ 150,000/s and ≥ 30 × sync_each | $(ratio "$(echo "$a2" | j "['events_per_sec']")" "$each") × sync_each |
| sync, 1 writer, batch 1 | $(echo "$a3" | j "['events_per_sec']") events/s (p50 $(echo "$a3" | j "['p50_us']") µs) | ≥ 0.9 × sync_each | $(ratio "$(echo "$a3" | j "['events_per_sec']")" "$each") × sync_each |
| whole-log replay, 10M events, warm | $(echo "$r1" | j "['events_per_sec']") events/s | ≥ 10,000,000/s | $(ratio "$(echo "$r1" | j "['events_per_sec']")" "$readraw") × read_rps |
| open a store of 10M events in 1M streams | $(echo "$r1" | j "['open_ms']") ms | < 1,000 ms | |
| peak RSS, 10M events in 1M streams, appending then replaying | $(echo "$r1" | j "['peak_rss_mb']") MB | < 300 MB | |
TABLE
echo
echo "raw JSON:"; printf '%s\n' "$disk" "$a1" "$a2" "$a3" "$r1"
rm -rf "$work/r1"
