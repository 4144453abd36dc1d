#!/usr/bin/env bash
# Coordinator ingest: N simulated agents each sending a 60-sample metric batch every 10 s to the real coordinator
# (Release) on PostgreSQL (fsync on, private cluster) + Redis. Reports sustained samples/s stored, the send -> ack
# latency (ack = stored in history and latest values updated), coordinator CPU and RSS; the load generator's own
# CPU is in its summary.
#   bench/scenarios/ingest.sh 1000 5000 10000     (Redis: FLEET_TEST_REDIS, e.g. from deploy/test/services.sh)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
: "${FLEET_TEST_REDIS:?start Redis first: eval \"\$(deploy/test/services.sh start)\"}"
. bench/scenarios/lib.sh
bench_init
bench_pg_start
dotnet build bench/LoadGen -c Release -nologo -v quiet "-clp:ErrorsOnly;NoSummary" >&2
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), PostgreSQL 15 fsync=on"
for n in "$@"; do
  bench_psql "DROP TABLE IF EXISTS metric_samples, metric_rollups CASCADE" >/dev/null 2>&1 || true
  bench_psql "DROP SCHEMA public CASCADE; CREATE SCHEMA public" >/dev/null
  bench_coordinator_start ConnectionStrings__Redis="$FLEET_TEST_REDIS" Fleet__Redis__KeyPrefix="ingest$n:" Fleet__Audit__SealInterval=00:00:01
  ramp=$(( n / 500 + 5 )); steady=120
  dotnet bench/LoadGen/bin/Release/net10.0/fleet-loadgen.dll --coordinator "http://127.0.0.1:$BENCH_GRPC" --agents "$n" \
    --duration "$((ramp + steady + 15))s" --heartbeat 10s --batch-interval 10s --samples 60 --report-every 30s >"$BENCH_WORK/loadgen-$n.log" 2>&1 &
  lpid=$!
  sleep "$ramp"
  c0=$(bench_cpu_ticks $BENCH_COORDINATOR_PID); s0=$(bench_psql "SELECT count(*) FROM metric_samples"); t0=$(date +%s.%N)
  sleep "$steady"
  c1=$(bench_cpu_ticks $BENCH_COORDINATOR_PID); s1=$(bench_psql "SELECT count(*) FROM metric_samples"); t1=$(date +%s.%N)
  hwm=$(awk '/VmHWM/ {print $2}' "/proc/$BENCH_COORDINATOR_PID/status")
  wait $lpid || true
  kill -TERM "$BENCH_COORDINATOR_PID"; wait "$BENCH_COORDINATOR_PID" 2>/dev/null || true; BENCH_COORDINATOR_PID=
  tick=$(getconf CLK_TCK)
  printf 'agents=%d stored_samples_per_s=%.0f (offered %d/s) coordinator_cpu=%.0f%%_of_one_core coordinator_peak_rss=%dMB\n' "$n" \
    "$(echo "($s1 - $s0) / ($t1 - $t0)" | bc -l)" $((n * 6)) "$(echo "($c1 - $c0) / $tick / ($t1 - $t0) * 100" | bc -l)" $((hwm / 1024))
  grep -E "ack latency|loadgen itself|errors:|agents ever" "$BENCH_WORK/loadgen-$n.log" | sed 's/^/  /'
done
