#!/usr/bin/env bash
# A short walk-through of rewind on its embedded default: builds the CLI,
# then appends, reads, follows and verifies events in ./rewind-data (or
# $REWIND_DATA_DIR). Run it from the repository root: bash scripts/quickstart.sh
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bin
go build -buildvcs=true -o bin/rewind ./cmd/rewind
export REWIND_DATA_DIR="${REWIND_DATA_DIR:-./rewind-data}"
run() { printf '\n$ %s\n' "$*"; "$@"; }

echo "rewind quick start: data in $REWIND_DATA_DIR"
stream="orders-$(date +%s)"
run bin/rewind append "$stream" --type OrderPlaced --data '{"order":1,"total":12.5}' --expected-version no-stream
printf '%s\n' '{"type":"OrderPaid","data":{"order":1}}' '{"type":"OrderShipped","data":{"order":1,"carrier":"ups"}}' \
  > /tmp/rewind-quickstart-events.jsonl
printf '\n$ printf ... | bin/rewind append %s --expected-version 1\n' "$stream"
bin/rewind append "$stream" --expected-version 1 < /tmp/rewind-quickstart-events.jsonl
printf '\n$ bin/rewind append %s --type OrderPlaced --data {} --expected-version no-stream   # a conflict, on purpose\n' "$stream"
bin/rewind append "$stream" --type OrderPlaced --data '{}' --expected-version no-stream || echo "(exit status $?: nothing was written)"
run bin/rewind read "$stream"
run bin/rewind read "$stream" --backward --limit 1 --json
run bin/rewind streams --prefix orders-
run bin/rewind stat

# tail follows the log live until interrupted; the embedded store belongs to
# one process at a time, so here it stops after a second (with a server, run
# it in another terminal while appending).
run timeout --signal=INT 1 bin/rewind tail --from-start --category orders- || true
run bin/rewind verify
