#!/usr/bin/env bash
# Log shipping, side by side with rsyslog: N (default 2,000,000) realistic ~200-byte application lines
# (bench/scenarios/loggen.py, generated before the clock starts) are appended in one go to a file that is already
# being tailed, and the clock stops when the sink has counted every line (by its seq=N, so losses and duplicates show).
#   (a) fleet-agent (NativeAOT publish, or FLEET_BENCH_AGENT=jit for the Release build on the JIT) tailing the file and
#       streaming to bench/LoadGen.StubServer, which counts each Logs batch's entries and only then acks it;
#   (b) rsyslogd 8.2302 (Debian), unprivileged (nobody), foreground, own config and work dir: imfile in inotify mode,
#       omfwd over TCP (newline-framed, template "%msg%\n") to the same sink's TCP line counter on loopback.
# Reports MB/s, lines/s, the shipper's CPU seconds and peak RSS, lines lost/duplicated, and the ratio.
#   bench/scenarios/logship.sh [lines] [agent|rsyslog|both (default)]
# Profiling: FLEET_BENCH_PERF=/path/perf.data records `perf record -g` of the agent during the measured interval (the
# NativeAOT binary is then published with its symbols: StripSymbols=false); `perf report -i /path/perf.data`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
lines=${1:-2000000}; which=${2:-both}
command -v rsyslogd >/dev/null || { apt-get update -qq && apt-get install -y -qq --no-install-recommends rsyslog >/dev/null; }
work=$(mktemp -d /tmp/fleet-logship.XXXXXX); chmod 755 "$work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
port=$((27000 + RANDOM % 500)); tcp=$((port + 500)); hz=$(getconf CLK_TCK)
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"

python3 bench/scenarios/loggen.py "$lines" "$work/lines.txt"
size=$(stat -c %s "$work/lines.txt")
echo "workload: $lines lines, $size bytes ($(echo "$size / $lines" | bc) bytes/line), generated before the clock"
dotnet build bench/LoadGen.StubServer -c Release -nologo -v quiet "-clp:ErrorsOnly;NoSummary" >&2
if [ "${FLEET_BENCH_AGENT:-aot}" = jit ]; then
  dotnet build src/Agent -c Release -nologo -v quiet "-clp:ErrorsOnly;NoSummary" >&2
  agent_cmd=(dotnet src/Agent/bin/Release/net10.0/fleet-agent.dll); agent_kind="Release build (JIT)"
else
  dotnet publish src/Agent -c Release -r linux-x64 -p:PublishAot=true ${FLEET_BENCH_PERF:+-p:StripSymbols=false} -o "$work/agent-bin" -nologo -v quiet >/dev/null
  agent_cmd=("$work/agent-bin/fleet-agent"); agent_kind="NativeAOT publish"
fi

# Starts the counting sink; sets sink_pid and sink_log.
sink_start() {
  sink_log="$work/sink-$1.log"
  dotnet bench/LoadGen.StubServer/bin/Release/net10.0/fleet-loadgen-stub.dll --port "$port" --tcp-lines "$tcp" \
    --expect-lines "$lines" --report-every 3600 >"$sink_log" 2>&1 &
  sink_pid=$!; pids+=("$sink_pid")
  until (exec 3<>"/dev/tcp/127.0.0.1/$tcp") 2>/dev/null; do sleep 0.2; done
}

sink_stop() { kill -TERM "$sink_pid"; wait "$sink_pid" 2>/dev/null || true; }

# Appends the workload to $1 (tailed by pid $2), waits for the sink to count every line (timeout 600 s), prints a result.
measure() {
  local file=$1 pid=$2 name=$3 profile=${4:-} c0 c1 t0 tend rss done_line deadline perf_pid=
  if [ -n "$profile" ]; then
    perf record -g -F 499 -o "$profile" -p "$pid" >"$work/perf.log" 2>&1 & perf_pid=$!
    sleep 1
  fi
  c0=$(awk '{print $14+$15}' "/proc/$pid/stat")
  t0=$(date +%s%3N)
  cat "$work/lines.txt" >>"$file"
  deadline=$((t0 + 600000))
  until done_line=$(grep -m1 '^\[sink\] complete' "$sink_log"); do
    [ "$(date +%s%3N)" -lt "$deadline" ] || { echo "$name: timed out; $(tail -2 "$sink_log")"; break; }
    sleep 0.2
  done
  if [ -n "$perf_pid" ]; then kill -INT "$perf_pid"; wait "$perf_pid" 2>/dev/null || true; fi
  sleep 1 # let a few more (duplicate) deliveries show up before the totals
  c1=$(awk '{print $14+$15}' "/proc/$pid/stat"); rss=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
  tend=$(echo "$done_line" | sed -n 's/.*at_unix_ms=\([0-9]*\).*/\1/p'); tend=${tend:-$(date +%s%3N)}
  local secs; secs=$(echo "($tend - $t0) / 1000" | bc -l)
  sink_stop
  local totals; totals=$(grep '^\[sink\] totals' "$sink_log")
  local missing dups; missing=$(echo "$totals" | sed -n 's/.*missing \([0-9-]*\).*/\1/p'); dups=$(echo "$totals" | sed -n 's/.*duplicates \([0-9]*\).*/\1/p')
  printf '%-34s %7.1f MB/s %9.0f lines/s  %6.2f s  cpu %6.2f s  peak rss %6.1f MB  lost %s  duplicated %s\n' "$name" \
    "$(echo "$size / 1000000 / $secs" | bc -l)" "$(echo "$lines / $secs" | bc -l)" "$secs" "$(echo "($c1 - $c0) / $hz" | bc -l)" \
    "$(echo "$rss / 1024" | bc -l)" "$missing" "$dups"
  echo "$secs $(echo "($c1 - $c0) / $hz" | bc -l) $rss" >>"$work/results"
}

if [ "$which" != rsyslog ]; then
  mkdir -p "$work/fleet/logs"; : >"$work/fleet/logs/app.log"
  sink_start fleet
  cat >"$work/fleet/agent.json" <<JSON
{ "coordinator": "http://127.0.0.1:$port", "stateDirectory": "$work/fleet/state", "outboxMaxMegabytes": ${FLEET_BENCH_OUTBOX_MB:-256},
  "logs": { "sources": [ { "name": "app", "path": "$work/fleet/logs/*.log", "startAt": "beginning" } ] } }
JSON
  "${agent_cmd[@]}" --config "$work/fleet/agent.json" >"$work/fleet/agent.log" 2>&1 &
  agent=$!; pids+=("$agent")
  sleep 3 # connected, the file opened
  measure "$work/fleet/logs/app.log" "$agent" "fleet-agent ($agent_kind)" "${FLEET_BENCH_PERF:-}"
  if [ -n "${FLEET_BENCH_PERF:-}" ]; then # symbols resolve only while the published binary exists: report now
    perf report -i "$FLEET_BENCH_PERF" --no-children --sort dso,symbol --stdio -g none >"$FLEET_BENCH_PERF.self.txt" 2>/dev/null || true
    perf report -i "$FLEET_BENCH_PERF" --children --sort symbol --stdio -g none >"$FLEET_BENCH_PERF.children.txt" 2>/dev/null || true
    echo "  profile: $FLEET_BENCH_PERF.self.txt, $FLEET_BENCH_PERF.children.txt"
  fi
  grep -A1 'DurableOutbox' "$work/fleet/agent.log" | grep -o 'Outbox is at its bound.*' | tail -1 | sed 's/^/  agent: /' || true
  kill -TERM "$agent"; wait "$agent" 2>/dev/null || true
fi

if [ "$which" != agent ]; then
  mkdir -p "$work/rsyslog/logs" "$work/rsyslog/spool"; : >"$work/rsyslog/logs/app.log"
  chown -R nobody "$work/rsyslog"
  sink_start rsyslog
  cat >"$work/rsyslog/rsyslog.conf" <<CONF
global(workDirectory="$work/rsyslog/spool")
module(load="imfile" mode="inotify")
template(name="raw" type="string" string="%msg%\n")
input(type="imfile" File="$work/rsyslog/logs/*.log" Tag="app" freshStartTail="off")
action(type="omfwd" target="127.0.0.1" port="$tcp" protocol="tcp" template="raw")
CONF
  setpriv --reuid=nobody --regid=nogroup --clear-groups rsyslogd -n -iNONE -f "$work/rsyslog/rsyslog.conf" >"$work/rsyslog/rsyslogd.log" 2>&1 &
  rs=$!; pids+=("$rs")
  sleep 3
  measure "$work/rsyslog/logs/app.log" "$rs" "rsyslogd 8.2302 (imfile+omfwd)"
  head -5 "$work/rsyslog/rsyslogd.log" | sed 's/^/  rsyslogd: /'
fi

if [ "$which" = both ]; then
  read -r fs fc fr < <(head -1 "$work/results"); read -r rs_ rc rr < <(tail -1 "$work/results")
  printf 'ratio fleet-agent/rsyslog: throughput %.2f  cpu %.2f  peak rss %.2f\n' "$(echo "$rs_ / $fs" | bc -l)" "$(echo "$fc / $rc" | bc -l)" "$(echo "$fr / $rr" | bc -l)"
fi
