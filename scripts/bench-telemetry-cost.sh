#!/usr/bin/env bash
# What the per-call gRPC metrics and spans cost, in instructions per ingested
# reading, counted by valgrind (callgrind) so machine noise cannot hide it.
#
# `edge up` (release build, SQLite) runs under callgrind twice per setting:
# once idle and once while `edge simulate` (native) pushes readings at a
# fixed rate for the same time. The difference of the two instruction counts
# over the readings acknowledged is the cost of ingesting a reading, with
# start-up, shutdown and idle timers cancelled out. Settings:
#   off     --rpc-telemetry false (no request metrics, no per-call spans)
#   on      the default: request metrics and spans, traces not exported
#   export  the default plus OTLP export to a local sink, every trace kept
#   sampled the same with 1 trace in 10 kept (parentbased_traceidratio 0.1)
#
# Usage: scripts/bench-telemetry-cost.sh [batch] [rate] [seconds]
#   batch: readings per Ingest call (default 1: the per-call cost at its
#   largest share); rate: readings/s offered (default 200); seconds: 10.
# Needs valgrind and a release build (`cargo build --release -p edge`).
set -euo pipefail
cd "$(dirname "$0")/.."

BATCH=${1:-1}
RATE=${2:-200}
SECONDS_=${3:-10}
EDGE=target/release/edge
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

command -v valgrind >/dev/null || { echo "valgrind is not installed" >&2; exit 1; }
[ -x "$EDGE" ] || { echo "build it first: cargo build --release -p edge" >&2; exit 1; }

# A sink for OTLP/HTTP exports: accepts and discards.
python3 - "$WORK/sink.port" <<'PY' &
import http.server, socketserver, sys
class Sink(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200); self.end_headers()
    def log_message(self, *args): pass
with socketserver.TCPServer(("127.0.0.1", 0), Sink) as server:
    open(sys.argv[1], "w").write(str(server.server_address[1]))
    server.serve_forever()
PY
for _ in $(seq 100); do [ -s "$WORK/sink.port" ] && break; sleep 0.1; done
SINK="http://127.0.0.1:$(cat "$WORK/sink.port")"

# Instructions `edge up` executes over a run, with the environment ENVS and
# the arguments ARGS; $1 = setting, $2 = load (yes/no). Prints
# "instructions readings".
measure() {
  local name=$1 load=$2
  local dir="$WORK/$name-$load"
  mkdir -p "$dir"
  env "${ENVS[@]}" valgrind --tool=callgrind --callgrind-out-file="$dir/callgrind.out" \
    "$EDGE" up --data-dir "$dir/data" --ready-file "$dir/ready.json" \
    --ingest-addr 127.0.0.1:0 --store-addr 127.0.0.1:0 --sync-addr 127.0.0.1:0 \
    --health-addr 127.0.0.1:0 --metrics-addr 127.0.0.1:0 --storage-reserve 64MiB "${ARGS[@]}" \
    >"$dir/up.log" 2>&1 &
  local pid=$!
  for _ in $(seq 600); do [ -s "$dir/ready.json" ] && break; sleep 0.1; done
  local ingest
  ingest=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["ingest"])' "$dir/ready.json")
  local readings=0
  if [ "$load" = yes ]; then
    readings=$("$EDGE" simulate --ingest-url "http://$ingest" --batch "$BATCH" \
      --concurrency 1 --rate "$RATE" --duration "${SECONDS_}s" 2>&1 |
      sed -n 's/^\([0-9]*\) readings acknowledged.*/\1/p')
  else
    sleep "$SECONDS_"
  fi
  kill -TERM "$pid"
  wait "$pid" || true
  local total
  total=$(sed -n 's/^summary: //p' "$dir/callgrind.out")
  echo "$total $readings"
}

printf '| setting | batch | readings | instructions per reading |\n|---|---|---|---|\n'
for setting in off on export sampled; do
  case $setting in
    off) ARGS=(--rpc-telemetry false); ENVS=() ;;
    on) ARGS=(); ENVS=() ;;
    export) ARGS=(); ENVS=(OTEL_EXPORTER_OTLP_ENDPOINT="$SINK" OTEL_BSP_SCHEDULE_DELAY=500) ;;
    sampled) ARGS=(); ENVS=(OTEL_EXPORTER_OTLP_ENDPOINT="$SINK" OTEL_BSP_SCHEDULE_DELAY=500
      OTEL_TRACES_SAMPLER=parentbased_traceidratio OTEL_TRACES_SAMPLER_ARG=0.1) ;;
  esac
  read -r idle _ < <(measure "$setting" no)
  read -r busy readings < <(measure "$setting" yes)
  if [ "${readings:-0}" -gt 0 ]; then
    per=$(( (busy - idle) / readings ))
  else
    per="n/a"
  fi
  printf '| %s | %s | %s | %s |\n' "$setting" "$BATCH" "$readings" "$per"
done
