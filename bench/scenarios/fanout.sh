#!/usr/bin/env bash
# Run fan-out: one health.check run to N simulated agents (the load generator answers Succeeded at once) through the
# real coordinator (Release) on PostgreSQL (fsync on, private cluster) + Redis. Reports the time from the API call
# until every invocation is Succeeded, p50/p99 per invocation (run created -> invocation finished, from the stored
# timestamps), coordinator CPU and RSS during the run; the load generator's CPU is in its own summary.
#   bench/scenarios/fanout.sh 1000 5000     (Redis: FLEET_TEST_REDIS, e.g. from deploy/test/services.sh)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
: "${FLEET_TEST_REDIS:?start Redis first: eval \"\$(deploy/test/services.sh start)\"}"
. bench/scenarios/lib.sh
bench_init
bench_pg_start
dotnet build bench/LoadGen -c Release -nologo -v quiet "-clp:ErrorsOnly;NoSummary" >&2
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), PostgreSQL 15 fsync=on"
api="http://127.0.0.1:$BENCH_REST/api/v1"
for n in "$@"; do
  bench_psql "DROP SCHEMA public CASCADE; CREATE SCHEMA public" >/dev/null
  bench_coordinator_start ConnectionStrings__Redis="$FLEET_TEST_REDIS" Fleet__Redis__KeyPrefix="fanout$n$RANDOM:"
  runid="fan$n"
  dotnet bench/LoadGen/bin/Release/net10.0/fleet-loadgen.dll --coordinator "http://127.0.0.1:$BENCH_GRPC" --agents "$n" \
    --run-id "$runid" --duration 600s --heartbeat 10s --report-every 60s >"$BENCH_WORK/loadgen-$n.log" 2>&1 &
  lpid=$!
  until [ "$(curl -sf "$api/agents?status=AGENT_STATUS_ONLINE" | jq '.agents | length')" -ge "$n" ]; do sleep 1; done
  sleep 5 # registrations settled
  c0=$(bench_cpu_ticks $BENCH_COORDINATOR_PID); t0=$(date +%s.%N)
  id=$(curl -sf -X POST "$api/runs" -H 'content-type: application/json' -H 'x-fleet-user: bench' \
        -d "{\"task\":\"health.check\",\"tags\":[\"loadgen-run=$runid\"],\"client_token\":\"bench-$runid\"}" | jq -r .id)
  while :; do
    # The run list (no invocations) is cheap to poll; the full run with 5,000 invocations is fetched once at the end.
    status=$(curl -sf "$api/runs?task=health.check&page_size=5" | jq -r --arg id "$id" '.runs[] | select(.id == $id) | .status')
    [ "$status" != "RUN_STATUS_IN_PROGRESS" ] && break
    sleep 0.1
  done
  t1=$(date +%s.%N); c1=$(bench_cpu_ticks $BENCH_COORDINATOR_PID)
  hwm=$(awk '/VmHWM/ {print $2}' "/proc/$BENCH_COORDINATOR_PID/status")
  curl -sf "$api/runs/$id" >"$BENCH_WORK/run-$n.json"
  kill -TERM $lpid; wait $lpid || true
  kill -TERM "$BENCH_COORDINATOR_PID"; wait "$BENCH_COORDINATOR_PID" 2>/dev/null || true; BENCH_COORDINATOR_PID=
  tick=$(getconf CLK_TCK)
  printf 'agents=%d status=%s all_done_in=%.2fs coordinator_cpu=%.1fs coordinator_peak_rss=%dMB\n' "$n" "$status" \
    "$(echo "$t1 - $t0" | bc -l)" "$(echo "($c1 - $c0) / $tick" | bc -l)" $((hwm / 1024))
  python3 - "$BENCH_WORK/run-$n.json" <<'PY'
import json, sys, datetime
run = json.load(open(sys.argv[1]))
def t(s): return datetime.datetime.fromisoformat(s.replace('Z', '+00:00'))
created = t(run['createdAt'])
inv = run.get('invocations', [])
lat = sorted((t(i['finishedAt']) - created).total_seconds() for i in inv if i.get('finishedAt'))
states = {}
for i in inv: states[i['state']] = states.get(i['state'], 0) + 1
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] if lat else float('nan')
print(f"  invocations {len(inv)} {states}; per invocation (created -> finished) p50 {q(0.5):.3f}s p99 {q(0.99):.3f}s max {lat[-1] if lat else float('nan'):.3f}s")
PY
  grep -E "loadgen itself|errors:|tasks answered" "$BENCH_WORK/loadgen-$n.log" | sed 's/^/  /'
done
