#!/usr/bin/env bash
# A short walk-through of rewind on its embedded default: builds the CLI,
# then appends, reads, follows and verifies events in a temporary data
# directory of its own, removed at the end (also on failure or Ctrl-C).
# It ignores any REWIND_* variable of your shell (such as REWIND_SERVER or
# REWIND_DATA_DIR), so it works whether or not a server is running.
# Run it from anywhere: bash scripts/quickstart.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# Forget the caller's rewind settings: this walk-through uses its own.
while IFS='=' read -r name _; do
  case "$name" in REWIND_*) unset "$name" ;; esac
done < <(env)

work="$(mktemp -d "${TMPDIR:-/tmp}/rewind-quickstart.XXXXXX")"
# Clean up on every way out: success, failure (set -e), Ctrl-C, kill, and a
# closed terminal (SIGHUP). Any rewind still running is stopped first, so
# that nothing holds the data directory being removed.
cleanup() {
  trap - EXIT INT TERM HUP
  local pids p _
  pids="$(jobs -p)"
  # timeout runs tail in a process group of its own, led by timeout's pid:
  # signal the job and its group, and wait (up to 5 s) until both are
  # gone, so that tail stops even if a signal caught timeout before it
  # knew its child's pid.
  for p in $pids; do
    for _ in $(seq 100); do
      kill -0 "$p" 2>/dev/null || kill -0 -- "-$p" 2>/dev/null || break
      kill -TERM -- "$p" "-$p" 2>/dev/null || true
      sleep 0.05
    done
  done
  [ -z "$pids" ] || wait $pids 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

go build -o "$work/rewind" ./cmd/rewind
export REWIND_DATA_DIR="$work/data"
rewind() { "$work/rewind" "$@"; }
run() { printf '\n$ rewind %s\n' "$*"; rewind "$@"; }

echo "rewind quick start: data in $REWIND_DATA_DIR (removed at the end)"
stream="orders-1"
run append "$stream" --type OrderPlaced --data '{"order":1,"total":12.5}' --expected-version no-stream
printf '%s\n' '{"type":"OrderPaid","data":{"order":1}}' '{"type":"OrderShipped","data":{"order":1,"carrier":"ups"}}' \
  > "$work/events.jsonl"
printf '\n$ printf ... | rewind append %s --expected-version 1\n' "$stream"
rewind append "$stream" --expected-version 1 < "$work/events.jsonl"
printf '\n$ rewind append %s --type OrderPlaced --data {} --expected-version no-stream   # a conflict, on purpose\n' "$stream"
status=0
rewind append "$stream" --type OrderPlaced --data '{}' --expected-version no-stream || status=$?
if [ "$status" -ne 4 ]; then
  echo "expected exit status 4 (conflict), got $status" >&2
  exit 1
fi
echo "(exit status 4: a conflict; nothing was written)"
run read "$stream"
run read "$stream" --backward --limit 1 --json
run streams --prefix orders-
run stat

# tail follows the log live until interrupted; the embedded store belongs to
# one process at a time, so here it stops after a second (with a server, run
# it in another terminal while appending).
printf '\n$ rewind tail --from-start --category orders-   # stopped after 1s\n'
timeout --signal=INT 1 "$work/rewind" tail --from-start --category orders- &
wait $! || true
run verify
