#!/usr/bin/env bash
# HTTP push throughput (issue 13): the seed year (843,621 events) POSTed to
# `serve --http-listen` with curl, LINES lines per request, PAR requests at a time; each
# request is answered once durable (fsynced). Prints events/s of the whole push and
# checks that every event was accepted.
#
#   cargo build --release
#   bench/http_push.sh                       # LINES=10000 PAR=1 RESULTS=problems
#   LINES=1000 PAR=2 RESULTS=all bench/http_push.sh
#
# SEED=FILE pushes another NDJSON file; NETWAIT_BIN picks the binary.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${NETWAIT_BIN:-target/release/netwait}
lines=${LINES:-10000}
par=${PAR:-1}
results=${RESULTS:-problems}
work=$(mktemp -d)
pid=
cleanup() {
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
seed=${SEED:-$work/seed2019.ndjson}
[ -f "$seed" ] || python3 tests/tools/gen_seed2019.py "$seed" >/dev/null
split -l "$lines" -d -a 5 "$seed" "$work/req."
requests=$(ls "$work"/req.* | wc -l)
events=$(wc -l < "$seed")
"$bin" serve --data "$work/data" --listen 127.0.0.1:0 --http-listen 127.0.0.1:0 \
    > "$work/out" 2> "$work/err" &
pid=$!
for _ in $(seq 100); do
    grep -q '^netwait http listening on ' "$work/out" && break
    sleep 0.1
done
addr=$(sed -n 's/^netwait http listening on //p' "$work/out")
url="http://$addr/v1/events?results=$results&source=bench"
start=$(date +%s.%N)
ls "$work"/req.* | xargs -P "$par" -I{} \
    curl -sS --fail-with-body -o /dev/null -H 'Content-Type: application/x-ndjson' \
    --data-binary @{} "$url"
end=$(date +%s.%N)
accepted=$(curl -sS "http://$addr/metrics" | sed -n 's/^netwait_pushed_accepted_total //p')
if [ "$accepted" != "$events" ]; then
    echo "accepted $accepted of $events events" >&2
    exit 1
fi
awk -v e="$events" -v r="$requests" -v s="$start" -v t="$end" -v l="$lines" -v p="$par" -v res="$results" \
    'BEGIN { d = t - s; printf "%d events in %d requests of %d lines, %d at a time, results=%s: %.2f s, %.0f events/s\n", e, r, l, p, res, d, e / d }'
