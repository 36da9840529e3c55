#!/usr/bin/env bash
# Ingest throughput while pruning runs, beside ingest alone (BENCHMARKS.md,
# "Bounded storage"). Both runs: `edge up` on a fresh SQLite site draining to
# a local `edge cloud`, and `edge simulate` pushing as fast as acknowledged.
# "pruning" sets --retention 0s, so every version is pruned as soon as the
# cloud has it: retention runs the whole time, at the drain's pace.
#
# Usage: scripts/bench-pruning.sh [duration, default 20s]
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-20s}
cargo build --release -q -p edge
EDGE=target/release/edge
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT

wait_for() { # file
  for _ in $(seq 1 200); do [ -s "$1" ] && return 0; sleep 0.1; done
  echo "timed out waiting for $1" >&2; return 1
}

run() { # label, extra edge-up flags...
  local label=$1; shift
  local dir="$WORK/$label"; mkdir -p "$dir"
  EDGE_CLOUD_SITE_TOKENS=bench-site=bench "$EDGE" cloud --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
    --cloud-data-dir "$dir/cloud" --ready-file "$dir/cloud.json" --log warn &
  local cloud=$!
  wait_for "$dir/cloud.json"
  local cloud_url="http://$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["listen"])' "$dir/cloud.json")"
  EDGE_CLOUD_TOKEN=bench "$EDGE" up --site-id bench-site --data-dir "$dir/site" --cloud-url "$cloud_url" \
    --ingest-addr 127.0.0.1:0 --store-addr 127.0.0.1:0 --sync-addr 127.0.0.1:0 \
    --metrics-addr 127.0.0.1:0 --ready-file "$dir/up.json" --log warn "$@" &
  local up=$!
  wait_for "$dir/up.json"
  local ingest store
  ingest=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["ingest"])' "$dir/up.json")
  store=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["store"])' "$dir/up.json")
  echo "== $label"
  "$EDGE" simulate --ingest-url "http://$ingest" --mode stream --batch 500 --concurrency 4 \
    --duration "$DURATION" | tail -n 4
  "$EDGE" stats --store-url "http://$store" | grep -E "readings|unsynced|storage|pruned"
  kill -TERM $up $cloud; wait $up $cloud 2>/dev/null || true
}

run alone
run pruning --retention 0s
