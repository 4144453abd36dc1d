#!/usr/bin/env bash
# Builds and runs the stand-in coordinator (Welcome for Hello, Ack for Batch) on 127.0.0.1, e.g.
#   bench/stub-server.sh --port 5081 --reject-every 0 --report-every 5
# Stop it with Ctrl+C in the foreground or `kill -TERM <pid>` (a backgrounded non-interactive job ignores SIGINT).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

want=65536
if ! ulimit -n "$want" 2>/dev/null; then
  hard="$(ulimit -H -n)"
  if [ "$hard" != "unlimited" ]; then
    ulimit -n "$hard"
  fi
  if [ "$(ulimit -n)" != "unlimited" ] && [ "$(ulimit -n)" -lt 20000 ]; then
    echo "stub-server.sh: could not raise the open-file limit to $want; using $(ulimit -n) (the hard limit); 10,000 agents need >= 20,000." >&2
  fi
fi

if [ "${FLEET_BENCH_NO_BUILD:-0}" != "1" ]; then
  dotnet build "$here/LoadGen.StubServer/Fleet.Bench.LoadGen.StubServer.csproj" -c Release -nologo -v quiet "-clp:ErrorsOnly;NoSummary" >&2
fi
exec dotnet "$here/LoadGen.StubServer/bin/Release/net10.0/fleet-loadgen-stub.dll" "$@"
