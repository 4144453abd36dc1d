#!/usr/bin/env bash
# Agent footprint vs node_exporter, side by side for the same minutes: the NativeAOT agent with the cpu, memory,
# disk, load and network collectors at 10 s (no probes, no logs) streaming to a coordinator whose CPU is not counted,
# against Debian's prometheus-node-exporter scraped every 10 s. Peak RSS and CPU seconds per minute of each.
#   bench/scenarios/footprint.sh [minutes (default 3)]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
minutes=${1:-3}
command -v prometheus-node-exporter >/dev/null || { apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus-node-exporter >/dev/null; }
work=$(mktemp -d /tmp/fleet-footprint.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
rest=$((26000 + RANDOM % 500)); grpc=$((rest + 500)); nodeport=$((rest + 1000))
dotnet publish src/Agent -c Release -r linux-x64 -p:PublishAot=true -o "$work/agent" -nologo -v quiet >/dev/null
dotnet build src/Coordinator -c Release -nologo -v quiet "-clp:ErrorsOnly;NoSummary" >&2
Fleet__Listen__RestPort=$rest Fleet__Listen__GrpcPort=$grpc Fleet__DataDirectory="$work/data" Fleet__EmbeddedAgent__Enabled=false \
  Logging__LogLevel__Default=Warning dotnet src/Coordinator/bin/Release/net10.0/Fleet.Coordinator.dll >"$work/coordinator.log" 2>&1 &
pids+=($!)
until curl -sf "http://127.0.0.1:$rest/readyz" >/dev/null; do sleep 0.5; done
cat >"$work/agent.json" <<JSON
{ "coordinator": "http://127.0.0.1:$grpc", "stateDirectory": "$work/state",
  "collectors": { "cpu": {}, "memory": {}, "disk": {}, "load": {}, "network": {} }, "metricsFlushSeconds": 10 }
JSON
"$work/agent/fleet-agent" --config "$work/agent.json" >"$work/agent.log" 2>&1 &
agent=$!; pids+=($agent)
prometheus-node-exporter --web.listen-address=127.0.0.1:$nodeport >"$work/node.log" 2>&1 &
node=$!; pids+=($node)
( while sleep 10; do curl -s "http://127.0.0.1:$nodeport/metrics" >/dev/null; done ) &
pids+=($!)
sleep 15 # both warmed up: one scrape, first collections sent
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
a0=$(ticks $agent); n0=$(ticks $node)
sleep $((minutes * 60))
a1=$(ticks $agent); n1=$(ticks $node); hz=$(getconf CLK_TCK)
arss=$(awk '/VmHWM/ {print $2}' /proc/$agent/status); nrss=$(awk '/VmHWM/ {print $2}' /proc/$node/status)
samples=$(curl -s "http://127.0.0.1:$rest/api/v1/metrics/latest" | grep -o '"name"' | wc -l)
acpu=$(echo "($a1 - $a0) / $hz / $minutes" | bc -l); ncpu=$(echo "($n1 - $n0) / $hz / $minutes" | bc -l)
printf 'fleet-agent (AOT)  peak RSS %6.1f MB  CPU %.3f s/min   (%s series visible at the coordinator)\n' "$(echo "$arss/1024" | bc -l)" "$acpu" "$samples"
printf 'node_exporter 1.5  peak RSS %6.1f MB  CPU %.3f s/min\n' "$(echo "$nrss/1024" | bc -l)" "$ncpu"
printf 'ratio agent/node_exporter: RSS %.2f  CPU %.2f\n' "$(echo "$arss/$nrss" | bc -l)" "$(echo "$acpu/($ncpu+0.000001)" | bc -l)"
