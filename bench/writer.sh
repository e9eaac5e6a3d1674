#!/usr/bin/env bash
# Queries under a full-speed push, and 200 concurrent clients, against two builds,
# interleaved (the machine's speed swings): issue 16 item 3.
#
#   bench/writer.sh BASE_BIN NEW_BIN STORE PUSH_FILE FROM TO ROUNDS
#
# STORE is copied for every run (a push grows it). Needs examples/push_query_latency
# (release) as $PQL and ghz on PATH (go install github.com/bojand/ghz/cmd/ghz@latest).
set -euo pipefail
base=$1 new=$2 store=$3 push=$4 from=$5 to=$6 rounds=${7:-2}
pql=${PQL:?set PQL to the push_query_latency example}
work=$(mktemp -d /tmp/writer-bench.XXXXXX)
trap 'kill "${pid:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT

serve() { # BIN: starts it on a copy of STORE, sets pid and port
  rm -rf "$work/data"; cp -a "$store" "$work/data"
  "$1" serve --data "$work/data" --listen 127.0.0.1:0 >"$work/out" 2>"$work/err" &
  pid=$!
  for _ in $(seq 600); do
    port=$(sed -n 's/^netwait listening on 127.0.0.1:\([0-9]*\)$/\1/p' "$work/out")
    [ -n "$port" ] && return 0
    sleep 0.1
  done
  echo "server did not start" >&2; cat "$work/err" >&2; exit 1
}
stop() { kill "$pid"; wait "$pid" || true; pid=; }

for r in $(seq "$rounds"); do
  for b in "$base" "$new"; do
    echo "== round $r $b"
    serve "$b"
    sleep 1 # the background log check
    "$pql" "127.0.0.1:$port" "$push" "$from" "$to"
    stop
    serve "$b"
    sleep 1
    ghz --insecure -c 200 -n 6000 --call netwait.v1.Stats/GetTable1 \
      -d "{\"from\":\"$from\",\"to\":\"$to\"}" "127.0.0.1:$port" \
      | grep -E "Count:|Requests/sec:|Average:|Slowest:|50 % in|99 % in|\[OK\]|\[Unavailable\]|\[.*\]" || true
    stop
  done
done
