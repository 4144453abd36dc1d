# Shared by the benchmark scenarios: a private PostgreSQL 15 cluster with fsync on, and the real coordinator.
# Source it; call bench_init first. Everything started is stopped by bench_cleanup (installed as the EXIT trap).

bench_init() {
  BENCH_WORK=$(mktemp -d /tmp/fleet-bench.XXXXXX); chmod 755 "$BENCH_WORK"
  BENCH_PG_PORT=$((24000 + RANDOM % 1000)); BENCH_GRPC=$((BENCH_PG_PORT + 1000)); BENCH_REST=$((BENCH_PG_PORT + 2000))
  trap bench_cleanup EXIT
  ulimit -n "$(ulimit -H -n)"
}

bench_cleanup() {
  [ -n "${BENCH_COORDINATOR_PID:-}" ] && kill -TERM "$BENCH_COORDINATOR_PID" 2>/dev/null && wait "$BENCH_COORDINATOR_PID" 2>/dev/null || true
  su postgres -c "/usr/lib/postgresql/15/bin/pg_ctl -D $BENCH_WORK/pg -m immediate stop" >/dev/null 2>&1 || true
  rm -rf "$BENCH_WORK"
}

# PostgreSQL 15 with fsync and synchronous_commit on; sets BENCH_PG (Npgsql connection string).
bench_pg_start() {
  local pgbin=/usr/lib/postgresql/15/bin
  mkdir "$BENCH_WORK/pg" && chown postgres "$BENCH_WORK/pg" && echo fleet > "$BENCH_WORK/pw" && chmod 644 "$BENCH_WORK/pw"
  su postgres -c "$pgbin/initdb -D $BENCH_WORK/pg -U postgres --auth-local=trust --auth-host=scram-sha-256 --pwfile=$BENCH_WORK/pw" >/dev/null
  su postgres -c "$pgbin/pg_ctl -D $BENCH_WORK/pg -o '-p $BENCH_PG_PORT -k $BENCH_WORK/pg -c listen_addresses=127.0.0.1 -c fsync=on -c synchronous_commit=on -c shared_buffers=512MB -c max_wal_size=4GB -c max_connections=300' -l $BENCH_WORK/pg/server.log -w start" >/dev/null
  BENCH_PG="Host=127.0.0.1;Port=$BENCH_PG_PORT;Username=postgres;Password=fleet;Database=postgres"
}

bench_psql() { PGPASSWORD=fleet psql -h 127.0.0.1 -p "$BENCH_PG_PORT" -U postgres -tAc "$1"; }

# The coordinator (Release) on BENCH_PG; extra settings as NAME=VALUE environment assignments.
# BENCH_COORDINATOR_DLL: run that build instead (e.g. an older commit's, for a before/after); nothing is built then.
bench_coordinator_start() {
  local dll=${BENCH_COORDINATOR_DLL:-src/Coordinator/bin/Release/net10.0/Fleet.Coordinator.dll}
  [ -n "${BENCH_COORDINATOR_DLL:-}" ] || dotnet build src/Coordinator -c Release -nologo -v quiet "-clp:ErrorsOnly;NoSummary" >&2
  env ConnectionStrings__Postgres="$BENCH_PG" Fleet__Listen__RestPort=$BENCH_REST Fleet__Listen__GrpcPort=$BENCH_GRPC \
    Fleet__DataDirectory="$BENCH_WORK/data" Logging__LogLevel__Default=Warning "$@" \
    dotnet "$dll" >"$BENCH_WORK/coordinator.log" 2>&1 &
  BENCH_COORDINATOR_PID=$!
  until curl -sf "http://127.0.0.1:$BENCH_REST/readyz" >/dev/null; do
    kill -0 "$BENCH_COORDINATOR_PID" 2>/dev/null || { echo "the coordinator exited during start:" >&2; cat "$BENCH_WORK/coordinator.log" >&2; exit 1; }
    sleep 0.5
  done
}

bench_cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
