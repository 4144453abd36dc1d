#!/usr/bin/env bash
# Logs stored and searchable on PostgreSQL: N (default 2,000,000) realistic ~200-byte lines (bench/scenarios/loggen.py,
# generated before the clock starts) appended in one go to a file tailed by the real agent (NativeAOT), shipped to the
# real coordinator (Release) on a private PostgreSQL 15 cluster with fsync and synchronous_commit on. Reports lines/s
# until every line is stored (the coordinator acks a batch after its commit), the CPU seconds of agent, coordinator
# and PostgreSQL, where the coordinator's write time goes (its Debug timing logs: BatchIngest group phases and
# LogsIngest copy/insert), then checks that a search (REST q=) returns the expected count and shows the plan gist.
#   bench/scenarios/logstore.sh [lines]      FLEET_BENCH_BATCH_BYTES=983040 for the agent's largest batches
#   FLEET_BENCH_OUTBOX_MB=N: the agent's outbox bound (default 256). Since the shipper holds back while the coordinator is
#   connected and the outbox over half full, the default no longer drops batches when the coordinator is slower.
#   FLEET_BENCH_TIME_INDEX=1 also compares the "Time" B-tree with a BRIN index (size, build time, a range query).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
lines=${1:-2000000}
. bench/scenarios/lib.sh
bench_init
agent_pid=
trap 'if [ -n "$agent_pid" ]; then kill -TERM "$agent_pid" 2>/dev/null || true; wait "$agent_pid" 2>/dev/null || true; fi; bench_cleanup' EXIT
trap 'exit 130' INT TERM
bench_pg_start
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg), PostgreSQL 15 fsync=on synchronous_commit=on"
python3 bench/scenarios/loggen.py "$lines" "$BENCH_WORK/lines.txt"
size=$(stat -c %s "$BENCH_WORK/lines.txt")
echo "workload: $lines lines, $size bytes, generated before the clock; agent batchMaxBytes ${FLEET_BENCH_BATCH_BYTES:-262144 (default)}, outboxMaxMegabytes ${FLEET_BENCH_OUTBOX_MB:-256 (default)}"
dotnet publish src/Agent -c Release -r linux-x64 -p:PublishAot=true -o "$BENCH_WORK/agent-bin" -nologo -v quiet >/dev/null
bench_coordinator_start Fleet__EmbeddedAgent__Enabled=false Logging__LogLevel__Fleet.Coordinator.Logs.LogsIngestHandler=Debug \
  Logging__LogLevel__Fleet.Coordinator.Agents.BatchIngest=Debug Logging__LogLevel__Fleet.Coordinator.Logs.LogsIndexMerger=Debug Logging__Console__FormatterName=simple Logging__Console__FormatterOptions__SingleLine=true

mkdir -p "$BENCH_WORK/logs"; : >"$BENCH_WORK/logs/app.log"
batch=${FLEET_BENCH_BATCH_BYTES:+, \"batchMaxBytes\": $FLEET_BENCH_BATCH_BYTES}
cat >"$BENCH_WORK/agent.json" <<JSON
{ "coordinator": "http://127.0.0.1:$BENCH_GRPC", "stateDirectory": "$BENCH_WORK/state", "agentId": "logstore-bench",
  "outboxMaxMegabytes": ${FLEET_BENCH_OUTBOX_MB:-256},
  "logs": { "sources": [ { "name": "app", "path": "$BENCH_WORK/logs/*.log", "startAt": "beginning" } ]$batch } }
JSON
"$BENCH_WORK/agent-bin/fleet-agent" --config "$BENCH_WORK/agent.json" >"$BENCH_WORK/agent.log" 2>&1 &
agent_pid=$!
sleep 5
pg_ticks() { local t=0 p; for p in $(pgrep -u postgres -f "postgres"); do t=$((t + $(awk '{print $14+$15}' "/proc/$p/stat" 2>/dev/null || echo 0))); done; echo $t; }
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
a0=$(ticks $agent_pid); c0=$(ticks $BENCH_COORDINATOR_PID); p0=$(pg_ticks)
t0=$(date +%s%3N)
cat "$BENCH_WORK/lines.txt" >>"$BENCH_WORK/logs/app.log"
stored=0; deadline=$((t0 + 1800000))
while [ "$stored" -lt "$lines" ] && [ "$(date +%s%3N)" -lt "$deadline" ]; do
  sleep 1
  stored=$(bench_psql "SELECT count(*) FROM log_entries")
  printf '  %6.0f s  %8d stored\n' "$(echo "($(date +%s%3N) - $t0) / 1000" | bc -l)" "$stored" >>"$BENCH_WORK/progress"
done
t1=$(date +%s%3N); a1=$(ticks $agent_pid); c1=$(ticks $BENCH_COORDINATOR_PID); p1=$(pg_ticks); hz=$(getconf CLK_TCK)
secs=$(echo "($t1 - $t0) / 1000" | bc -l)
printf 'stored %d of %d lines in %.1f s: %.0f lines/s (%.1f MB/s of log text); cpu: agent %.1f s, coordinator %.1f s, postgres %.1f s; peak rss: agent %d MB, coordinator %d MB\n' \
  "$stored" "$lines" "$secs" "$(echo "$stored / $secs" | bc -l)" "$(echo "$size / 1000000 / $secs" | bc -l)" \
  "$(echo "($a1 - $a0) / $hz" | bc -l)" "$(echo "($c1 - $c0) / $hz" | bc -l)" "$(echo "($p1 - $p0) / $hz" | bc -l)" \
  $(($(awk '/VmHWM/ {print $2}' /proc/$agent_pid/status) / 1024)) $(($(awk '/VmHWM/ {print $2}' /proc/$BENCH_COORDINATOR_PID/status) / 1024))
awk 'NR % 10 == 0' "$BENCH_WORK/progress" | head -30
echo "duplicates stored: $(bench_psql 'SELECT count(*) - count(DISTINCT "Message") FROM log_entries')"

# Where the coordinator's time went (Debug timing logs), averaged per group.
grep -o 'Stored a group of [0-9]* batches: .*' "$BENCH_WORK/coordinator.log" | awk '{n++; b+=$5; d+=$8; w+=$11; c+=$14} END {if (n) printf "BatchIngest: %d groups, %.1f batches/group; per group: dedupe %.1f ms, write %.1f ms, commit %.1f ms\n", n, b/n, d/n, w/n, c/n}'
grep -o 'Stored [0-9]* log entries of .*' "$BENCH_WORK/coordinator.log" | sed 's/ ms//g; s/,//g' | awk '{n++; r+=$2; if ($8 == "(direct):") d++; cv+=$10; cp+=$12; ins+=$14; o+=$17; f+=$19}
  END {if (n) printf "LogsIngest: %d groups (%d direct), %.0f rows/group; per group: convert %.1f ms, copy %.1f ms, insert/look-up %.1f ms, other SQL %.1f ms, followers %.1f ms\n", n, d, r/n, cv/n, cp/n, ins/n, o/n, f/n}'
grep -c 'Merged [0-9]* pending-list pages' "$BENCH_WORK/coordinator.log" | sed 's/^/LogsIndexMerger: merges that found a pending list: /' || true
grep -A1 'DurableOutbox' "$BENCH_WORK/agent.log" | grep -m1 -o 'Outbox is at its bound.*' | sed 's/^/agent: /' || true
bench_psql "SELECT 'sizes: table ' || pg_size_pretty(pg_relation_size('log_entries')) || ', indexes ' || string_agg(indexrelid::regclass || ' ' || pg_size_pretty(pg_relation_size(indexrelid)), ', ') FROM pg_index WHERE indrelid = 'log_entries'::regclass"

# Search: an order number of the first ERROR line; the token "order" is only in ERROR lines. The lines carry their own
# times (2026-11-28, parsed by the agent), so the search names a range instead of the API's default last 24 hours.
order=$(grep -m1 -o 'place order [0-9]*' "$BENCH_WORK/lines.txt" | awk '{print $3}')
expected=$(grep -c "place order $order for" "$BENCH_WORK/lines.txt")
got=$(curl -sf "http://127.0.0.1:$BENCH_REST/api/v1/logs?q=order%20$order&from=2026-01-01T00:00:00Z&limit=5000" | grep -o '"message"' | wc -l)
ts0=$(date +%s%3N); curl -sf "http://127.0.0.1:$BENCH_REST/api/v1/logs?q=order%20$order&from=2026-01-01T00:00:00Z&limit=100" >/dev/null; ts1=$(date +%s%3N)
echo "search q='order $order': $got entries (expected $expected from the workload), $((ts1 - ts0)) ms for limit=100"
bench_psql "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) SELECT * FROM log_entries WHERE to_tsvector('simple', \"Message\") @@ websearch_to_tsquery('simple', 'order $order') ORDER BY \"Time\" DESC, \"Id\" DESC LIMIT 101" | sed 's/^/  plan: /'

if [ "${FLEET_BENCH_TIME_INDEX:-0}" = 1 ]; then
  tidx=$(bench_psql "SELECT indexrelid::regclass FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] WHERE indrelid = 'log_entries'::regclass AND a.attname = 'Time' AND i.indnatts = 1")
  range="SELECT count(*) FROM log_entries WHERE \"Time\" >= (SELECT min(\"Time\") FROM log_entries) AND \"Time\" < (SELECT min(\"Time\") FROM log_entries) + interval '2 seconds'"
  q() { local s e; s=$(date +%s%3N); bench_psql "$1" >/dev/null; e=$(date +%s%3N); echo $((e - s)); }
  echo "time index: B-tree $tidx $(bench_psql "SELECT pg_size_pretty(pg_relation_size('$tidx'))"), range query $(q "$range") ms, rebuild $(q "REINDEX INDEX $tidx") ms"
  bench_psql "DROP INDEX $tidx" >/dev/null
  b=$(q 'CREATE INDEX log_entries_time_brin ON log_entries USING brin ("Time")')
  echo "time index: BRIN $(bench_psql "SELECT pg_size_pretty(pg_relation_size('log_entries_time_brin'))"), range query $(q "$range") ms, build $b ms"
fi
