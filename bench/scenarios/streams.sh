#!/usr/bin/env bash
# Scenario: a real coordinator (Release) on PostgreSQL + Redis holding N simulated agent streams
# (hello, welcome, heartbeat every 10 s, an event batch every 30 s acked after storage).
# Reports the coordinator's steady-state CPU and peak RSS next to the load generator's own numbers.
#
#   bench/scenarios/streams.sh 1000 5000 10000
#
# Needs FLEET_TEST_PG and FLEET_TEST_REDIS (e.g. eval "$(deploy/test/services.sh start)").
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
: "${FLEET_TEST_PG:?start the services first: eval \"\$(deploy/test/services.sh start)\"}"
: "${FLEET_TEST_REDIS:?}"
ulimit -n "$(ulimit -H -n)"
dotnet build src/Coordinator -c Release -nologo -v quiet "-clp:ErrorsOnly;NoSummary" >&2
dotnet build bench/LoadGen -c Release -nologo -v quiet "-clp:ErrorsOnly;NoSummary" >&2
tick=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
out=$(mktemp -d)

for n in "$@"; do
  db="fleet_bench_${n}_$$"
  PGPASSWORD=fleet psql -h 127.0.0.1 -p "$(sed -E 's/.*Port=([0-9]+).*/\1/' <<<"$FLEET_TEST_PG")" -U postgres -qc "CREATE DATABASE \"$db\"" >/dev/null
  cs="${FLEET_TEST_PG/Database=postgres/Database=$db}"
  rest=$((18000 + RANDOM % 1000)); grpc=$((rest + 1000))
  ConnectionStrings__Postgres="$cs" ConnectionStrings__Redis="$FLEET_TEST_REDIS" Fleet__Redis__KeyPrefix="bench$n:" \
  Fleet__Listen__RestPort=$rest Fleet__Listen__GrpcPort=$grpc Fleet__DataDirectory="$out/data$n" Logging__LogLevel__Default=Warning \
    dotnet src/Coordinator/bin/Release/net10.0/Fleet.Coordinator.dll >"$out/coordinator-$n.log" 2>&1 &
  cpid=$!
  until curl -sf "http://127.0.0.1:$rest/readyz" >/dev/null; do sleep 0.5; done
  ramp=$(( n / 500 + 5 ))
  dotnet bench/LoadGen/bin/Release/net10.0/fleet-loadgen.dll --coordinator "http://127.0.0.1:$grpc" --agents "$n" \
    --duration "$((ramp + 80))s" --heartbeat 10s --batch-interval 30s --report-every 30s --json-out "$out/loadgen-$n.json" >"$out/loadgen-$n.log" 2>&1 &
  lpid=$!
  sleep "$ramp"; c0=$(cpu_ticks $cpid); t0=$(date +%s.%N)
  sleep 60; c1=$(cpu_ticks $cpid); t1=$(date +%s.%N)
  online=$(curl -s "http://127.0.0.1:$rest/api/v1/agents?status=AGENT_STATUS_ONLINE" | grep -o '"AGENT_STATUS_ONLINE"' | wc -l)
  hwm=$(awk '/VmHWM/ {print $2}' "/proc/$cpid/status")
  wait $lpid || true
  kill -TERM $cpid; wait $cpid 2>/dev/null || true
  PGPASSWORD=fleet psql -h 127.0.0.1 -p "$(sed -E 's/.*Port=([0-9]+).*/\1/' <<<"$FLEET_TEST_PG")" -U postgres -qc "DROP DATABASE \"$db\" WITH (FORCE)" >/dev/null
  cpu=$(echo "($c1 - $c0) / $tick / ($t1 - $t0) * 100" | bc -l)
  printf 'agents=%d online_via_api=%d coordinator_cpu=%.1f%%_of_one_core coordinator_peak_rss=%dMB\n' "$n" "$online" "$cpu" $((hwm / 1024))
  echo "load generator (its own CPU and RSS are in its summary):"; tail -n 12 "$out/loadgen-$n.log" | sed 's/^/  /'
done
echo "logs: $out"
