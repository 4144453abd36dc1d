#!/usr/bin/env bash
# Audit benchmark: sealed rows/s with 1 and 3 concurrent writers (100-row transactions), then the time to verify
# 1,000,000 rows. PostgreSQL 15 with fsync ON in its own temporary cluster; the real coordinator (Release) seals.
#   bench/scenarios/audit.sh [rows-per-phase (default 300000)]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
rows=${1:-300000}
work=$(mktemp -d /tmp/fleet-audit-bench.XXXXXX); chmod 755 "$work"
pgbin=/usr/lib/postgresql/15/bin
port=$((24000 + RANDOM % 1000)); grpc=$((port + 1000)); rest=$((port + 2000))
cleanup() {
  [ -n "${cpid:-}" ] && kill -TERM "$cpid" 2>/dev/null && wait "$cpid" 2>/dev/null || true
  su postgres -c "$pgbin/pg_ctl -D $work/pg -m immediate stop" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
mkdir "$work/pg" && chown postgres "$work/pg" && echo fleet > "$work/pw" && chmod 644 "$work/pw"
su postgres -c "$pgbin/initdb -D $work/pg -U postgres --auth-local=trust --auth-host=scram-sha-256 --pwfile=$work/pw" >/dev/null
su postgres -c "$pgbin/pg_ctl -D $work/pg -o '-p $port -k $work/pg -c listen_addresses=127.0.0.1 -c fsync=on -c synchronous_commit=on -c shared_buffers=512MB -c max_wal_size=4GB' -l $work/pg/server.log -w start" >/dev/null
cs="Host=127.0.0.1;Port=$port;Username=postgres;Password=fleet;Database=postgres"
dotnet build src/Coordinator -c Release -nologo -v quiet "-clp:ErrorsOnly;NoSummary" >&2
dotnet build bench/AuditBench -c Release -nologo -v quiet "-clp:ErrorsOnly;NoSummary" >&2
ConnectionStrings__Postgres="$cs" Fleet__Listen__RestPort=$rest Fleet__Listen__GrpcPort=$grpc Fleet__DataDirectory="$work/data" \
  Logging__LogLevel__Default=Warning dotnet src/Coordinator/bin/Release/net10.0/Fleet.Coordinator.dll >"$work/coordinator.log" 2>&1 &
cpid=$!
until curl -sf "http://127.0.0.1:$rest/readyz" >/dev/null; do sleep 0.5; done
bench() { dotnet bench/AuditBench/bin/Release/net10.0/fleet-auditbench.dll --pg "$cs" --coordinator "http://127.0.0.1:$grpc" "$@"; }
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), PostgreSQL 15 fsync=on"
bench --rows "$rows" --writers 1 --batch 100
bench --rows "$rows" --writers 3 --batch 100
total=$(PGPASSWORD=fleet psql -h 127.0.0.1 -p $port -U postgres -tAc 'SELECT count(*) FROM audit_events')
if [ "$total" -lt 1000000 ]; then bench --rows $((1000000 - total)) --writers 3 --batch 1000 >/dev/null; fi
bench --rows 0 --verify
bench --rows 0 --verify
