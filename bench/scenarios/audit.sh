#!/usr/bin/env bash
# Audit benchmark: sealed rows/s with 1 and 3 concurrent writers (100-row transactions), then the time to verify
# 1,000,000 rows. PostgreSQL 15 with fsync ON in its own temporary cluster; the real coordinator (Release) seals.
#   bench/scenarios/audit.sh [rows-per-phase (default 300000)]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
rows=${1:-300000}
. bench/scenarios/lib.sh
bench_init
bench_pg_start
cs="$BENCH_PG"; port=$BENCH_PG_PORT; grpc=$BENCH_GRPC
dotnet build bench/AuditBench -c Release -nologo -v quiet "-clp:ErrorsOnly;NoSummary" >&2
bench_coordinator_start
bench() { dotnet bench/AuditBench/bin/Release/net10.0/fleet-auditbench.dll --pg "$cs" --coordinator "http://127.0.0.1:$grpc" "$@"; }
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), PostgreSQL 15 fsync=on"
bench --rows "$rows" --writers 1 --batch 100
bench --rows "$rows" --writers 3 --batch 100
total=$(PGPASSWORD=fleet psql -h 127.0.0.1 -p $port -U postgres -tAc 'SELECT count(*) FROM audit_events')
if [ "$total" -lt 1000000 ]; then bench --rows $((1000000 - total)) --writers 3 --batch 1000 >/dev/null; fi
bench --rows 0 --verify
bench --rows 0 --verify
