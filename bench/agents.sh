#!/usr/bin/env bash
# Builds the load generator (Release) and runs it with the given arguments, e.g.
#   bench/agents.sh --agents 10000 --duration 120s --batch-interval 5s --json-out /tmp/run.json
# Set FLEET_BENCH_NO_BUILD=1 to skip the build. See bench/README.md.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# One file descriptor per connection: 10,000 agents need `ulimit -n` >= 20,000 (with headroom; the
# coordinator needs as many on its side). Raise the soft limit; fall back to the hard limit with a warning.
want=65536
if ! ulimit -n "$want" 2>/dev/null; then
  hard="$(ulimit -H -n)"
  if [ "$hard" != "unlimited" ]; then
    ulimit -n "$hard"
  fi
  if [ "$(ulimit -n)" != "unlimited" ] && [ "$(ulimit -n)" -lt 20000 ]; then
    echo "agents.sh: could not raise the open-file limit to $want; using $(ulimit -n) (the hard limit)." \
         "10,000 agents need >= 20,000: raise the hard limit (limits.conf, systemd LimitNOFILE, docker --ulimit nofile=65536:65536)." >&2
  fi
fi

if [ "${FLEET_BENCH_NO_BUILD:-0}" != "1" ]; then
  dotnet build "$here/LoadGen/Fleet.Bench.LoadGen.csproj" -c Release -nologo -v quiet "-clp:ErrorsOnly;NoSummary" >&2
fi
exec dotnet "$here/LoadGen/bin/Release/net10.0/fleet-loadgen.dll" "$@"
