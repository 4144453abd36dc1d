#!/usr/bin/env bash
# Alert latency, side by side with Prometheus + Alertmanager (Debian packages), same machine, same method, one run:
# bench/scenarios/alertlatency.py writes `bench_alert{n="N"} 1` into a *.prom file (temporary file renamed into place;
# t0 just before the rename) that Fleet's textfile collector and node_exporter's textfile collector both read, and
# records when each system's webhook reaches its receiver. Latency = arrival - t0. One alert at a time, a random
# 0.5-1.5 s gap after each has arrived everywhere and gone back to 0; `for: 0` on both sides; one Alertmanager
# group per alert (group_by ['...']), so every alert is a new group and group_wait applies to each.
#   pass "tuned":    Fleet agent textfile collection 1 s (and on change: collectors.textfile.watch, on by default),
#                    metric flush 0.1 s (the lowest it accepts); coordinator in embedded mode (SQLite, in-memory
#                    MassTransit), Fleet:Notifications:GroupWait 0;
#                    Prometheus scrape 1 s + evaluation 1 s; Alertmanager group_wait 0 s, group_interval 1 s.
#   pass "defaults": every tool as shipped: Fleet agent collection 10 s (and on change) and flush 10 s, a coordinator
#                    of its own with no Notifications setting but the receiver and route (GroupWait at its 1 s
#                    default); Prometheus's global defaults (scrape 1 m, evaluation 1 m); Alertmanager's
#                    (group_wait 30 s, group_interval 5 m). Alerts take minutes here, so up to 4 are in flight at
#                    once, fired 10-30 s apart (distinct series and groups, so they do not wait on each other).
# Prints p50/p90/p99/max per system, the Fleet/Alertmanager ratios, and where Fleet's time goes (from the
# coordinator's SQLite: sample time, batch receipt, transition, notification row). Exit 1 if an alert never arrived.
#   bench/scenarios/alertlatency.sh [alerts (default 100)] [alerts in the defaults pass (default 12; 0 skips it)]
# FLEET_BENCH_AGENT=aot uses the NativeAOT agent (default: the Release build on the JIT); FLEET_BENCH_NO_BUILD=1 skips the
# Release builds; FLEET_BENCH_KEEP=1 keeps the work directory; FLEET_BENCH_TEXTFILE_WATCH=false turns the agent's
# collect-on-change off in both passes (collection on the interval only, as before it existed).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
alerts=${1:-100}; default_alerts=${2:-12}
command -v prometheus-alertmanager >/dev/null || { apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus-alertmanager >/dev/null; }
command -v prometheus >/dev/null || { apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }
command -v prometheus-node-exporter >/dev/null || { apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus-node-exporter >/dev/null; }
work=$(mktemp -d /tmp/fleet-alertlatency.XXXXXX); chmod 755 "$work"
pids=(); pass_pids=()
cleanup() {
  for p in "${pass_pids[@]}" "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pass_pids[@]}" "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  [ -n "${FLEET_BENCH_KEEP:-}" ] && echo "kept $work" || rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
base=$((28000 + RANDOM % 500))
recv=$((base + 1000)); node=$((base + 1001)); prom=$((base + 1002)); am=$((base + 1003))
watch=${FLEET_BENCH_TEXTFILE_WATCH:-true}
case "$watch" in true|false) ;; *) echo "FLEET_BENCH_TEXTFILE_WATCH must be true or false, not '$watch'" >&2; exit 2 ;; esac
textfile="$work/textfile"; mkdir -p "$textfile"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "versions: $(prometheus --version 2>&1 | head -1 | cut -d' ' -f1-3); $(prometheus-alertmanager --version 2>&1 | head -1 | cut -d' ' -f1-3); $(prometheus-node-exporter --version 2>&1 | head -1 | cut -d' ' -f1-3)"

[ -n "${FLEET_BENCH_NO_BUILD:-}" ] || dotnet build src/Coordinator -c Release -nologo -v quiet "-clp:ErrorsOnly;NoSummary" >&2
if [ "${FLEET_BENCH_AGENT:-jit}" = aot ]; then
  dotnet publish src/Agent -c Release -r linux-x64 -p:PublishAot=true -o "$work/agent-bin" -nologo -v quiet >/dev/null
  agent_cmd=("$work/agent-bin/fleet-agent"); agent_kind="NativeAOT publish"
else
  [ -n "${FLEET_BENCH_NO_BUILD:-}" ] || dotnet build src/Agent -c Release -nologo -v quiet "-clp:ErrorsOnly;NoSummary" >&2
  agent_cmd=(dotnet src/Agent/bin/Release/net10.0/fleet-agent.dll); agent_kind="Release build (JIT)"
fi

prometheus-node-exporter --web.listen-address=127.0.0.1:$node --collector.disable-defaults --collector.textfile \
  --collector.textfile.directory="$textfile" >"$work/node.log" 2>&1 &
pids+=($!)

# The coordinator of one pass, in embedded mode (SQLite, in-process presence, MassTransit in memory), without its own
# agent: one webhook receiver, one route for the bench rule only; the extra environment (NAME=VALUE ...) is the pass's
# tuning. Its data directory is $work/NAME/data; ports differ per pass.
start_coordinator() {
  local name=$1 offset=$2; shift 2
  rest=$((base + offset)); grpc=$((base + 500 + offset))
  env "$@" Fleet__Listen__RestPort=$rest Fleet__Listen__GrpcPort=$grpc Fleet__DataDirectory="$work/$name/data" Fleet__EmbeddedAgent__Enabled=false \
    Fleet__Notifications__Receivers__bench__Kind=webhook Fleet__Notifications__Receivers__bench__Url="http://127.0.0.1:$recv/fleet" \
    Fleet__Notifications__Receivers__bench__Secret=bench Fleet__Notifications__Routes__0__Receivers__0=bench \
    Fleet__Notifications__Routes__0__Matchers__0=alertname=bench-alert \
    Logging__LogLevel__Default=Warning dotnet src/Coordinator/bin/Release/net10.0/Fleet.Coordinator.dll >"$work/$name/coordinator.log" 2>&1 &
  pass_pids+=($!)
  until curl -sf "http://127.0.0.1:$rest/readyz" >/dev/null; do sleep 0.5; done
  curl -sf -X POST "http://127.0.0.1:$rest/api/v1/rules" -H 'Content-Type: application/json' -d @- >/dev/null <<'JSON' || { echo "creating the Fleet rule failed"; exit 1; }
{ "yaml": "name: bench-alert\nkind: threshold\nseverity: warning\nexpr: bench_alert > 0.5\nfor: 0s\nsummary: \"bench alert {{n}}\"\n" }
JSON
}

# start_pass NAME COLLECTOR_JSON FLUSH_JSON PROM_GLOBAL AM_ROUTE_TIMING: the agent, Prometheus and Alertmanager of one pass
# (after start_coordinator).
start_pass() {
  local name=$1 collector=$2 flush=$3 prom_global=$4 am_timing=$5 d="$work/$1"
  cat >"$d/agent.json" <<JSON
{ "coordinator": "http://127.0.0.1:$grpc", "agentId": "fleet-$name", "stateDirectory": "$d/agent-state",
  "collectors": { "textfile": { "directory": "$textfile", "watch": $watch $collector } } $flush }
JSON
  "${agent_cmd[@]}" --config "$d/agent.json" >"$d/agent.log" 2>&1 &
  pass_pids+=($!)
  cat >"$d/rules.yml" <<'YAML'
groups:
  - name: bench
    rules:
      - alert: bench-alert
        expr: bench_alert > 0.5
        for: 0s
YAML
  cat >"$d/prometheus.yml" <<YAML
$prom_global
rule_files: ["$d/rules.yml"]
alerting:
  alertmanagers: [ { static_configs: [ { targets: ["127.0.0.1:$am"] } ] } ]
scrape_configs:
  - job_name: node
    static_configs: [ { targets: ["127.0.0.1:$node"] } ]
YAML
  cat >"$d/alertmanager.yml" <<YAML
route:
  receiver: bench
  group_by: ['...']
$am_timing
receivers:
  - name: bench
    webhook_configs: [ { url: "http://127.0.0.1:$recv/am/am-$name" } ]
YAML
  prometheus-alertmanager --config.file="$d/alertmanager.yml" --storage.path="$d/am-data" --web.listen-address=127.0.0.1:$am \
    --cluster.listen-address= >"$d/alertmanager.log" 2>&1 &
  pass_pids+=($!)
  prometheus --config.file="$d/prometheus.yml" --storage.tsdb.path="$d/prom-data" --web.listen-address=127.0.0.1:$prom \
    >"$d/prometheus.log" 2>&1 &
  pass_pids+=($!)
}
stop_pass() {
  for p in "${pass_pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pass_pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pass_pids=()
}
coordinator_warnings() { # NAME: the first warnings of that pass's coordinator
  grep -E "^(warn|fail|crit)" "$work/$1/coordinator.log" | grep -v "EntityFrameworkCore.Query\[10102\]" | head -5 | sed "s/^/  coordinator ($1): /" || true
}

( while sleep 5; do cut -d' ' -f1 /proc/loadavg >>"$work/load"; done ) &
pids+=($!)
loadrange() { sort -n "$work/load" | sed -n '1p;$p' | paste -sd- ; }
status=0
echo "pass tuned: $alerts alerts, one at a time; Fleet agent: $agent_kind, collectors.textfile.watch $watch"
mkdir -p "$work/tuned" "$work/defaults"
start_coordinator tuned 0 Fleet__Notifications__GroupWait=00:00:00
start_pass tuned ', "intervalSeconds": 1' ', "metricsFlushSeconds": 0.1' \
  'global: { scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s }' \
  '  group_wait: 0s
  group_interval: 1s
  repeat_interval: 4h'
python3 bench/scenarios/alertlatency.py --dir "$textfile" --port "$recv" --systems fleet-tuned,am-tuned --alerts "$alerts" \
  --first 1 --gap 0.5,1.5 --timeout 60 --out "$work/results.tsv" --label tuned | tee "$work/tuned.txt" || status=1
load_tuned=$(loadrange)
# Prometheus evaluates its rule group at a fixed offset after each scrape (both offsets come from hashes, and the rule
# file's path is random here, so it changes from run to run); its latency is about U(0, 1 s) + that offset + Alertmanager.
python3 - "$prom" <<'PY' || true
import json, re, sys, urllib.request
def get(path): return json.load(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}{path}"))["data"]
def frac(stamp): # fractional second of an RFC 3339 time (the interval is 1 s, so only that matters)
    m = re.search(r"\.(\d+)(?:Z|[+-]\d\d:\d\d)$", stamp); return float("0." + m.group(1)) if m else 0.0
scrape = frac(get("/api/v1/targets")["activeTargets"][0]["lastScrape"]); evaluation = frac(get("/api/v1/rules")["groups"][0]["lastEvaluation"])
print(f"prometheus (tuned): the rule group is evaluated {(evaluation - scrape) % 1:.3f} s after each scrape")
PY
coordinator_warnings tuned
stop_pass

python3 - "$work/tuned/data/fleet.db" "$work/results.tsv" <<'PY' || true
# Where Fleet's time goes, per alert of the tuned pass, from the coordinator's own rows (same host clock):
# t0 -> sample (textfile collection), sample -> batch received (flush + outbox + gRPC), received -> transition
# (commit + evaluation), transition -> notification row (router), row -> arrival (MassTransit + claim + HTTP).
import sqlite3, sys, datetime, math
db = sqlite3.connect(sys.argv[1])
def ts(s):
    s = s.replace(" ", "T")
    if "." in s:
        head, frac = s.split(".", 1); s = head + "." + frac[:6].ljust(6, "0")
    return datetime.datetime.fromisoformat(s).replace(tzinfo=datetime.timezone.utc).timestamp()
rows = [l.split("\t") for l in open(sys.argv[2]) if l.startswith("tuned\tfleet-tuned\t")]
received = sorted(ts(r[0]) for r in db.execute("select ReceivedAt from received_batches where AgentId = 'fleet-tuned'"))
phases = {k: [] for k in ["collect", "flush+send", "commit+eval", "route", "deliver", "after-collect", "total"]}
import bisect, json
for _, _, n, t0, arrival, lat in rows:
    t0 = float(t0); arrival = float(arrival)
    s = db.execute("select min(Time) from metric_samples where AgentId = 'fleet-tuned' and Name = 'bench_alert' and Labels = ? and Value > 0.5",
                   (f'n={n}',)).fetchone()[0]
    t = db.execute("select Id, Time from alert_transitions where RuleName = 'bench-alert' and Kind = 'firing' and LabelsJson like ? "
                   "and LabelsJson like '%fleet-tuned%' order by Id limit 1", (f'%"n":"{n}"%',)).fetchone()
    if s is None or t is None: continue
    c = db.execute("select CreatedAt from notifications where TransitionId = ?", (t[0],)).fetchone()
    if c is None: continue
    sample = ts(s); tr = ts(t[1]); created = ts(c[0])
    i = bisect.bisect_left(received, sample)
    rec = received[i] if i < len(received) else float("nan")
    for k, v in [("collect", sample - t0), ("flush+send", rec - sample), ("commit+eval", tr - rec), ("route", created - tr),
                 ("deliver", arrival - created), ("after-collect", arrival - sample), ("total", arrival - t0)]:
        phases[k].append(v)
def pct(v, p):
    v = sorted(v); return v[max(1, math.ceil(p / 100 * len(v))) - 1] if v else float("nan")
print(f"fleet-tuned, where the time goes ({len(phases['total'])} alerts; seconds):")
for k, v in phases.items():
    print(f"  {k:<12} mean {sum(v)/len(v) if v else float('nan'):6.3f}  p50 {pct(v,50):6.3f}  p90 {pct(v,90):6.3f}  p99 {pct(v,99):6.3f}  max {max(v) if v else float('nan'):6.3f}")
PY

if [ "$default_alerts" -gt 0 ]; then
  echo "pass defaults: $default_alerts alerts, up to 4 in flight, fired 10-30 s apart"
  : >"$textfile/bench.prom"
  start_coordinator defaults 1 # nothing but the receiver and route: Fleet:Notifications:GroupWait stays at its default
  start_pass defaults '' '' 'global: {}' ''
  python3 bench/scenarios/alertlatency.py --dir "$textfile" --port "$recv" --systems fleet-defaults,am-defaults --alerts "$default_alerts" \
    --first 1001 --gap 10,30 --inflight 4 --timeout 400 --warmup-timeout 400 --out "$work/results.tsv" --label defaults | tee "$work/defaults.txt" || status=1
  coordinator_warnings defaults
  stop_pass
fi

ratio() { # ratio of the p-field $2 between systems $3 and $4 in file $1
  local a b; a=$(grep " $3 " "$1" | sed -n "s/.* $2 *\([0-9.]*\) s.*/\1/p"); b=$(grep " $4 " "$1" | sed -n "s/.* $2 *\([0-9.]*\) s.*/\1/p")
  [ -n "$a" ] && [ -n "$b" ] && echo "scale=3; $a / $b" | bc -l || echo "?"
}
echo "ratio fleet-tuned/am-tuned: p50 $(ratio "$work/tuned.txt" p50 fleet-tuned am-tuned)  p90 $(ratio "$work/tuned.txt" p90 fleet-tuned am-tuned)  p99 $(ratio "$work/tuned.txt" p99 fleet-tuned am-tuned)  (goal p99 <= 0.6)"
[ "$default_alerts" -gt 0 ] && echo "ratio fleet-defaults/am-defaults: p50 $(ratio "$work/defaults.txt" p50 fleet-defaults am-defaults)  p99 $(ratio "$work/defaults.txt" p99 fleet-defaults am-defaults)"
echo "1-minute load average (sampled every 5 s): tuned pass $load_tuned; whole run $(loadrange)"
exit $status
