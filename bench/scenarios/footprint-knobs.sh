#!/usr/bin/env bash
# The agent's RSS under GC settings, side by side for the same minutes: five NativeAOT agents (cpu, memory, disk, load,
# network at 10 s) streaming to one coordinator, each with different DOTNET_GC* environment; then where the RSS of
# the default one goes, from /proc/PID/smaps.
#   bench/scenarios/footprint-knobs.sh [seconds (default 120)]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
seconds=${1:-120}
work=$(mktemp -d /tmp/fleet-knobs.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
rest=$((27000 + RANDOM % 400)); grpc=$((rest + 500))
dotnet publish src/Agent -c Release -r linux-x64 -p:PublishAot=true -o "$work/agent" -nologo -v quiet >/dev/null
dotnet build src/Coordinator -c Release -nologo -v quiet "-clp:ErrorsOnly;NoSummary" >&2
Fleet__Listen__RestPort=$rest Fleet__Listen__GrpcPort=$grpc Fleet__DataDirectory="$work/data" Fleet__EmbeddedAgent__Enabled=false \
  Logging__LogLevel__Default=Warning dotnet src/Coordinator/bin/Release/net10.0/Fleet.Coordinator.dll >"$work/coordinator.log" 2>&1 &
pids+=($!)
until curl -sf "http://127.0.0.1:$rest/readyz" >/dev/null; do sleep 0.5; done
declare -A envs=([default]="" [gen0size_512k]="DOTNET_GCgen0size=0x80000" [gen0size_256k]="DOTNET_GCgen0size=0x40000"
                 [conserve_memory]="DOTNET_GCConserveMemory=9" [heap_limit_16m]="DOTNET_GCHeapHardLimit=0x1000000")
declare -A agent
for name in "${!envs[@]}"; do
  mkdir -p "$work/$name"
  printf '{ "coordinator": "http://127.0.0.1:%s", "stateDirectory": "%s", "collectors": { "cpu": {}, "memory": {}, "disk": {}, "load": {}, "network": {} }, "metricsFlushSeconds": 10 }' \
    "$grpc" "$work/$name/state" >"$work/$name/agent.json"
  env ${envs[$name]} "$work/agent/fleet-agent" --config "$work/$name/agent.json" >"$work/$name/agent.log" 2>&1 &
  agent[$name]=$!; pids+=($!)
done
sleep "$seconds"
for name in "${!envs[@]}"; do
  printf '%-16s %-36s peak RSS %5.1f MB\n' "$name" "${envs[$name]:-(no setting)}" "$(awk '/VmHWM/ {print $2/1024}' "/proc/${agent[$name]}/status")"
done
echo "where the default agent's RSS goes (kB):"
awk '/^[0-9a-f]+-[0-9a-f]+ /{name=($6 == "" ? "[anonymous]" : $6)} /^Rss:/{rss[name]+=$2} END{for (n in rss) if (rss[n] > 256) print rss[n], n}' \
  "/proc/${agent[default]}/smaps" | sort -rn
