#!/usr/bin/env bash
# Log search latency on PostgreSQL: N (default 2,000,000) realistic lines (bench/scenarios/loggen.py; continuation lines
# of stack traces left out) COPYed into log_entries of a migrated, private PostgreSQL 15 cluster (fsync on), then the
# REST search (GET /api/v1/logs?q=…, limit 100, a window holding every line) timed for rare terms (a request id, a
# client IP, an order number) and common ones (ERROR, INFO, a user name): once before any ANALYZE of the table (as
# right after a bulk load) and once after one (as autovacuum leaves it). Each query runs twice; both times are shown.
#   bench/scenarios/logsearch.sh [lines]
#   FLEET_BENCH_COMPARE_DLL=/path/to/Fleet.Coordinator.dll: also time the same queries on that build (an older commit's
#   Release output), on the same data, for a before/after.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
lines=${1:-2000000}
. bench/scenarios/lib.sh
bench_init
bench_pg_start
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"
python3 bench/scenarios/loggen.py "$lines" "$BENCH_WORK/lines.txt"
bench_coordinator_start Fleet__EmbeddedAgent__Enabled=false   # migrates the database
kill -TERM "$BENCH_COORDINATOR_PID"; wait "$BENCH_COORDINATOR_PID" 2>/dev/null || true; BENCH_COORDINATOR_PID=
# Autovacuum off for log_entries, so "before ANALYZE" stays that way while it is measured.
bench_psql 'ALTER TABLE log_entries SET (autovacuum_enabled = false)' >/dev/null
t0=$(date +%s%3N)
awk -v OFS='\t' '/^20/ {gsub(/\t/, " "); gsub(/\\/, "/"); print "search-bench", "app", "/var/log/app/app.log", "f1", NR * 200, $1, 3, $0, "{}", $1}' "$BENCH_WORK/lines.txt" |
  PGPASSWORD=fleet psql -X -q -h 127.0.0.1 -p "$BENCH_PG_PORT" -U postgres -c '\copy log_entries ("AgentId","Source","Path","FileId","Offset","Time","Severity","Message","FieldsJson","ReceivedAt") from stdin'
rows=$(bench_psql 'SELECT count(*) FROM log_entries')
echo "loaded $rows rows in $(( ($(date +%s%3N) - t0) / 1000 )) s"

first_after() {  # line regex prefix-length: the first match at or after that line, its prefix cut off (awk exits: no SIGPIPE)
  awk -v s="$1" -v re="$2" -v cut="$3" 'NR >= s && match($0, re) { print substr($0, RSTART + cut, RLENGTH - cut); exit }' "$BENCH_WORK/lines.txt"
}
mid=$((lines / 2 + 1))
id=$(first_after "$mid" 'req=[0-9a-f]+' 4)
ip=$(first_after $((mid + 1000)) 'client=[0-9.]+' 7)
order=$(first_after $((mid + 2000)) 'order [0-9]+' 0)
from=2000-01-01T00:00:00Z; to=2100-01-01T00:00:00Z

search_all() {  # label
  local q enc out t1 t2 n
  for q in "$id" "$ip" "$order" ERROR INFO alice; do
    enc=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1]))' "$q")
    t1=$(curl -s -o "$BENCH_WORK/out.json" -w '%{time_total}' "http://127.0.0.1:$BENCH_REST/api/v1/logs?q=$enc&from=$from&to=$to&limit=100")
    t2=$(curl -s -o "$BENCH_WORK/out.json" -w '%{time_total}' "http://127.0.0.1:$BENCH_REST/api/v1/logs?q=$enc&from=$from&to=$to&limit=100")
    n=$(python3 -c 'import json, sys; print(len(json.load(open(sys.argv[1])).get("entries", [])))' "$BENCH_WORK/out.json")
    printf '  %-14s q=%-20s %3d entries  %8.0f ms  %8.0f ms\n' "$1" "$q" "$n" "$(echo "$t1 * 1000" | bc -l)" "$(echo "$t2 * 1000" | bc -l)"
  done
}
run_build() {  # label [dll]
  BENCH_COORDINATOR_DLL=${2:-} bench_coordinator_start Fleet__EmbeddedAgent__Enabled=false
  search_all "$1"
  kill -TERM "$BENCH_COORDINATOR_PID"; wait "$BENCH_COORDINATOR_PID" 2>/dev/null || true; BENCH_COORDINATOR_PID=
}
echo "before ANALYZE (no statistics):"
run_build this
[ -n "${FLEET_BENCH_COMPARE_DLL:-}" ] && run_build compared "$FLEET_BENCH_COMPARE_DLL"
bench_psql 'ANALYZE log_entries' >/dev/null
echo "after ANALYZE:"
run_build this
[ -n "${FLEET_BENCH_COMPARE_DLL:-}" ] && run_build compared "$FLEET_BENCH_COMPARE_DLL"
echo "load $(cut -d' ' -f1-3 /proc/loadavg)"
