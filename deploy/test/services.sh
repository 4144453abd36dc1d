#!/usr/bin/env bash
# The real services the tests talk to, started on free loopback ports without systemd:
# PostgreSQL 15, Redis, RabbitMQ (with its own epmd), s3rver (S3) and maildev (SMTP).
#
#   deploy/test/services.sh install          install whatever is missing (apt, npm), nothing else
#   eval "$(deploy/test/services.sh start)"  install, start everything, print the FLEET_TEST_* exports
#   deploy/test/services.sh env              print the exports of the running set again
#   deploy/test/services.sh stop             stop everything that `start` started, by PID, remove the data
#
# All data lives in one `mktemp -d` directory. What was started is recorded in a state file
# ($FLEET_TEST_STATE, default /tmp/fleet-test-services.state) as soon as it is started, so `stop`
# (also after a failed or interrupted start) stops exactly those processes and nothing else.
# Progress goes to stderr; stdout of `start`/`env` is only `export` lines.
set -euo pipefail

export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
STATE="${FLEET_TEST_STATE:-/tmp/fleet-test-services.state}"
PG_BIN=/usr/lib/postgresql/15/bin
RMQ_BIN=/usr/lib/rabbitmq/bin          # called directly (not the /usr/sbin wrapper, which su's to rabbitmq)
PG_PASSWORD=fleet
START_DEADLINE="${FLEET_TEST_START_TIMEOUT:-90}"   # seconds per service

log() { printf '[services] %s\n' "$*" >&2; }
die() { printf '[services] ERROR: %s\n' "$*" >&2; exit 1; }

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# ---------------------------------------------------------------------------------------------
# install
# ---------------------------------------------------------------------------------------------
install_missing() {
    local pkgs=() npms=()
    command -v redis-server >/dev/null  || pkgs+=(redis-server)
    [ -x "$RMQ_BIN/rabbitmq-server" ]   || pkgs+=(rabbitmq-server)
    command -v logrotate >/dev/null     || pkgs+=(logrotate)
    command -v promtool >/dev/null      || pkgs+=(prometheus)
    command -v python3 >/dev/null       || pkgs+=(python3)
    [ -x "$PG_BIN/initdb" ]             || pkgs+=(postgresql-15)
    if ! command -v npm >/dev/null; then pkgs+=(npm); fi
    local ilog; ilog=$(mktemp /tmp/fleet-test-install.XXXXXXXX)
    if [ "${#pkgs[@]}" -gt 0 ]; then
        log "apt-get install ${pkgs[*]}"
        { as_root apt-get update -q && as_root env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -q -o DPkg::Lock::Timeout=300 --no-install-recommends "${pkgs[@]}"; } >"$ilog" 2>&1 \
            || { tail -n 40 "$ilog" >&2; die "apt-get install failed (full log: $ilog)"; }
    fi
    command -v s3rver >/dev/null  || npms+=(s3rver@3.7.1)
    command -v maildev >/dev/null || npms+=(maildev@3.0.0)
    if [ "${#npms[@]}" -gt 0 ]; then
        log "npm install -g ${npms[*]}"
        as_root npm install -g --no-audit --no-fund --loglevel=error "${npms[@]}" >"$ilog" 2>&1 \
            || { tail -n 40 "$ilog" >&2; die "npm install failed (full log: $ilog)"; }
    fi
    rm -f "$ilog"
    local missing=()
    for c in redis-server logrotate promtool python3 s3rver maildev; do
        command -v "$c" >/dev/null || missing+=("$c")
    done
    [ -x "$RMQ_BIN/rabbitmq-server" ] || missing+=(rabbitmq-server)
    [ -x "$PG_BIN/initdb" ] || missing+=(postgresql-15)
    [ "${#missing[@]}" -eq 0 ] || die "still missing after install: ${missing[*]}"
}

# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------

# N distinct free loopback ports, taken below the kernel's ephemeral range (so an outgoing
# connection or a test's own port-0 listener cannot take one before the service binds it),
# never 5080/5081, and not a well-known port.
free_ports() {
    python3 - "$1" <<'PY'
import random, socket, sys
n = int(sys.argv[1])
try:
    lo_eph = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
except Exception:
    lo_eph = 32768
lo, hi = 20000, max(20001, min(lo_eph, 65536) - 1)
held, ports, tried = [], [], 0
while len(ports) < n and tried < 5000:
    tried += 1
    p = random.randint(lo, hi)
    if p in ports or p in (5080, 5081):
        continue
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", p))
    except OSError:
        s.close()
        continue
    held.append(s)
    ports.append(p)
while len(ports) < n:   # fall back to the kernel's choice
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    held.append(s)
    ports.append(s.getsockname()[1])
print(" ".join(map(str, ports)))
PY
}

tcp_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Record KEY=VALUE in the state file (shell-quoted, sourced by stop/env).
record() { printf '%s=%q\n' "$1" "$2" >>"$STATE"; }

service_failed() {  # name logfile
    printf '[services] ERROR: %s did not start within %ss. Last lines of %s:\n' "$1" "$START_DEADLINE" "$2" >&2
    tail -n 30 "$2" 2>/dev/null | sed 's/^/    /' >&2 || true
    exit 1
}

wait_tcp() {  # name port logfile [pid]
    local name=$1 port=$2 logf=$3 pid=${4:-} end=$((SECONDS + START_DEADLINE))
    until tcp_open "$port"; do
        if [ -n "$pid" ] && ! alive "$pid"; then
            printf '[services] ERROR: %s exited during start-up.\n' "$name" >&2
            tail -n 30 "$logf" 2>/dev/null | sed 's/^/    /' >&2 || true
            exit 1
        fi
        [ "$SECONDS" -lt "$end" ] || service_failed "$name" "$logf"
        sleep 0.1
    done
}

# Start a long-running foreground program in its own session (so its whole process group can be
# killed), output to a log, stdin from /dev/null. Prints the process group id.
spawn() {  # logfile cmd...
    local logf=$1; shift
    setsid "$@" >>"$logf" 2>&1 </dev/null &
    echo $!
}

rabbit_env() {  # the environment every rabbitmq-server / rabbitmqctl of this set needs
    export RABBITMQ_NODENAME="$RMQ_NODENAME" \
           ERL_EPMD_PORT="$EPMD_PORT" ERL_EPMD_ADDRESS=127.0.0.1 \
           RABBITMQ_CTL_DIST_PORT_MIN=0 RABBITMQ_CTL_DIST_PORT_MAX=0 \
           RABBITMQ_CONF_ENV_FILE="$SVC_DIR/rabbitmq/rabbitmq-env.conf"
}

# ---------------------------------------------------------------------------------------------
# start
# ---------------------------------------------------------------------------------------------
start_all() {
    local t0=$SECONDS
    if [ -f "$STATE" ]; then
        # shellcheck disable=SC1090
        ( . "$STATE"; [ -n "${PG_DATA:-}" ] && [ -f "$PG_DATA/postmaster.pid" ] && alive "$(head -1 "$PG_DATA/postmaster.pid")" ) \
            && die "services are already running (state $STATE): use '$0 env' or '$0 stop'"
        log "stale state $STATE: cleaning up what it recorded"
        stop_all
    fi

    SVC_DIR=$(mktemp -d /tmp/fleet-test.XXXXXXXX)
    chmod 755 "$SVC_DIR"   # postgres must reach its data dir inside
    : >"$STATE"
    record SVC_DIR "$SVC_DIR"
    # From here on a failure or Ctrl-C stops whatever was started so far.
    # shellcheck disable=SC2154  # rc is assigned inside the trap
    trap 'rc=$?; if [ "$rc" -ne 0 ]; then log "start failed: stopping what was started"; stop_all; fi' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM

    read -r PG_PORT REDIS_PORT RMQ_PORT RMQ_DIST_PORT EPMD_PORT S3_PORT SMTP_PORT MAILDEV_PORT <<<"$(free_ports 8)"
    for v in PG_PORT REDIS_PORT RMQ_PORT RMQ_DIST_PORT EPMD_PORT S3_PORT SMTP_PORT MAILDEV_PORT; do record "$v" "${!v}"; done
    mkdir -p "$SVC_DIR"/{redis,rabbitmq,s3/data,maildev/mail}

    # --- RabbitMQ first: it is the slowest to come up; the others start while it boots.
    RMQ_NODENAME="fleettest$$@localhost"
    record RMQ_NODENAME "$RMQ_NODENAME"
    : >"$SVC_DIR/rabbitmq/rabbitmq-env.conf"
    cat >"$SVC_DIR/rabbitmq/rabbitmq.conf" <<EOF
listeners.tcp.1 = 127.0.0.1:$RMQ_PORT
loopback_users.guest = true
EOF
    local epmd; epmd=$(command -v epmd || find /usr/lib/erlang -name epmd -type f 2>/dev/null | head -1)
    [ -n "$epmd" ] || die "epmd not found (is erlang-base installed?)"
    EPMD_PID=$(spawn "$SVC_DIR/rabbitmq/epmd.log" "$epmd" -port "$EPMD_PORT" -address 127.0.0.1)
    record EPMD_PID "$EPMD_PID"
    wait_tcp epmd "$EPMD_PORT" "$SVC_DIR/rabbitmq/epmd.log" "$EPMD_PID"
    record RMQ_PID_FILE "$SVC_DIR/rabbitmq/rabbitmq.pid"
    (
        rabbit_env
        export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT="$RMQ_PORT" RABBITMQ_DIST_PORT="$RMQ_DIST_PORT" \
               RABBITMQ_SERVER_START_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
               RABBITMQ_CONFIG_FILE="$SVC_DIR/rabbitmq/rabbitmq.conf" \
               RABBITMQ_ADVANCED_CONFIG_FILE="$SVC_DIR/rabbitmq/advanced.config" \
               RABBITMQ_ENABLED_PLUGINS_FILE="$SVC_DIR/rabbitmq/enabled_plugins" \
               RABBITMQ_MNESIA_BASE="$SVC_DIR/rabbitmq/mnesia" \
               RABBITMQ_LOG_BASE="$SVC_DIR/rabbitmq/log" \
               RABBITMQ_PID_FILE="$SVC_DIR/rabbitmq/rabbitmq.pid" \
               RABBITMQ_LOGS="$SVC_DIR/rabbitmq/log/rabbit.log"
        cd "$SVC_DIR/rabbitmq"
        "$RMQ_BIN/rabbitmq-server" -detached >>"$SVC_DIR/rabbitmq/startup.log" 2>&1 </dev/null
    ) || die "rabbitmq-server -detached failed: $(tail -n 20 "$SVC_DIR/rabbitmq/startup.log")"

    # --- Redis
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --daemonize yes --save "" --appendonly no \
        --dir "$SVC_DIR/redis" --pidfile "$SVC_DIR/redis/redis.pid" --logfile "$SVC_DIR/redis/redis.log" \
        >"$SVC_DIR/redis/redis.out" 2>&1 </dev/null || die "redis-server failed: $(tail -n 20 "$SVC_DIR/redis/redis.out")"
    record REDIS_PID_FILE "$SVC_DIR/redis/redis.pid"

    # --- s3rver and maildev (node programs in their own process groups)
    # Node 20 + OpenSSL 3: s3rver makes list continuation tokens with DES, which needs the legacy provider.
    S3_PGID=$(spawn "$SVC_DIR/s3/s3rver.log" env NODE_OPTIONS=--openssl-legacy-provider s3rver -d "$SVC_DIR/s3/data" -a 127.0.0.1 -p "$S3_PORT")
    record S3_PGID "$S3_PGID"
    MAILDEV_PGID=$(spawn "$SVC_DIR/maildev/maildev.log" maildev -s "$SMTP_PORT" -w "$MAILDEV_PORT" \
        --ip 127.0.0.1 --web-ip 127.0.0.1 --mail-directory "$SVC_DIR/maildev/mail")
    record MAILDEV_PGID "$MAILDEV_PGID"

    # --- PostgreSQL (initdb must run as postgres, never as root)
    local pg="$SVC_DIR/pg" as_pg=()
    mkdir -p "$pg"
    if [ "$(id -u)" -eq 0 ]; then chown postgres: "$pg"; as_pg=(runuser -u postgres --); fi
    chmod 700 "$pg"
    printf '%s\n' "$PG_PASSWORD" >"$pg/pwfile"
    [ "$(id -u)" -ne 0 ] || chown postgres: "$pg/pwfile"
    record PG_DATA "$pg/data"
    "${as_pg[@]}" "$PG_BIN/initdb" -D "$pg/data" -U postgres -E UTF8 --locale=C.UTF-8 \
        --auth-local=trust --auth-host=scram-sha-256 --pwfile="$pg/pwfile" >"$pg/initdb.log" 2>&1 \
        || { tail -n 30 "$pg/initdb.log" >&2; die "initdb failed"; }
    "${as_pg[@]}" "$PG_BIN/pg_ctl" -D "$pg/data" -l "$pg/postgres.log" -t "$START_DEADLINE" -w \
        -o "-p $PG_PORT -k $pg -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
        start >>"$pg/initdb.log" 2>&1 </dev/null || service_failed PostgreSQL "$pg/postgres.log"
    wait_tcp PostgreSQL "$PG_PORT" "$pg/postgres.log"

    # --- wait for the rest
    wait_tcp Redis "$REDIS_PORT" "$SVC_DIR/redis/redis.log"
    wait_tcp s3rver "$S3_PORT" "$SVC_DIR/s3/s3rver.log" "$S3_PGID"
    wait_tcp "maildev (SMTP)" "$SMTP_PORT" "$SVC_DIR/maildev/maildev.log" "$MAILDEV_PGID"
    wait_tcp "maildev (web)" "$MAILDEV_PORT" "$SVC_DIR/maildev/maildev.log" "$MAILDEV_PGID"
    local end=$((SECONDS + START_DEADLINE))
    until ( rabbit_env; "$RMQ_BIN/rabbitmqctl" -q await_startup --timeout 5 ) >>"$SVC_DIR/rabbitmq/startup.log" 2>&1 </dev/null; do
        [ "$SECONDS" -lt "$end" ] || service_failed RabbitMQ "$SVC_DIR/rabbitmq/log/rabbit.log"
        sleep 0.5
    done
    wait_tcp RabbitMQ "$RMQ_PORT" "$SVC_DIR/rabbitmq/log/rabbit.log"

    record STARTED 1
    trap - EXIT INT TERM
    log "all services up in $((SECONDS - t0))s (data in $SVC_DIR, state $STATE)"
}

# ---------------------------------------------------------------------------------------------
# env
# ---------------------------------------------------------------------------------------------
print_env() {
    [ -f "$STATE" ] || die "no state file $STATE: run '$0 start' first"
    # shellcheck disable=SC1090
    . "$STATE"
    [ "${STARTED:-}" = 1 ] || die "services in $STATE did not finish starting"
    cat <<EOF
export FLEET_TEST_PG='Host=127.0.0.1;Port=$PG_PORT;Username=postgres;Password=$PG_PASSWORD;Database=postgres'
export FLEET_TEST_REDIS='127.0.0.1:$REDIS_PORT'
export FLEET_TEST_RABBITMQ='amqp://guest:guest@127.0.0.1:$RMQ_PORT/'
export FLEET_TEST_S3='http://127.0.0.1:$S3_PORT'
export FLEET_TEST_SMTP='127.0.0.1:$SMTP_PORT'
export FLEET_TEST_MAILDEV='http://127.0.0.1:$MAILDEV_PORT'
export FLEET_TEST_RABBITMQCTL='$RMQ_BIN/rabbitmqctl'
export RABBITMQ_NODENAME='$RMQ_NODENAME'
export ERL_EPMD_PORT='$EPMD_PORT'
export ERL_EPMD_ADDRESS='127.0.0.1'
export RABBITMQ_CTL_DIST_PORT_MIN='0'
export RABBITMQ_CTL_DIST_PORT_MAX='0'
export RABBITMQ_CONF_ENV_FILE='$SVC_DIR/rabbitmq/rabbitmq-env.conf'
export PGPASSWORD='$PG_PASSWORD'
export PGHOST='127.0.0.1'
export PGPORT='$PG_PORT'
export PGUSER='postgres'
export FLEET_TEST_STATE='$STATE'
case ":\$PATH:" in *":$RMQ_BIN:"*) ;; *) export PATH='$RMQ_BIN':"\$PATH" ;; esac
EOF
}

# ---------------------------------------------------------------------------------------------
# stop
# ---------------------------------------------------------------------------------------------

# Processes we started are reparented to PID 1 once their starter exits; until it reaps them they
# linger as zombies, which `kill -0` and `pgrep` still see. These helpers ignore zombies.
alive() { local st; st=$(ps -o stat= -p "$1" 2>/dev/null) && [ -n "$st" ] && [ "${st#Z}" = "$st" ]; }
group_alive() { ps -eo pgid=,stat= | awk -v g="$1" '$1 == g && $2 !~ /^Z/ { f = 1 } END { exit !f }'; }

# kill a process group, but only if one of its processes still looks like the program we started
kill_group() {  # pgid pattern name
    local pgid=$1 pat=$2 name=$3
    [ -n "$pgid" ] || return 0
    pgrep -g "$pgid" -f "$pat" >/dev/null 2>&1 && group_alive "$pgid" || return 0
    kill -TERM -- "-$pgid" 2>/dev/null || true
    for _ in $(seq 100); do group_alive "$pgid" || { log "stopped $name"; return 0; }; sleep 0.05; done
    kill -KILL -- "-$pgid" 2>/dev/null || true
    log "killed $name"
}

# kill one process, but only if it is still the program we started (its name matches)
kill_pid() {  # pid comm-pattern name
    local pid=$1 pat=$2 name=$3
    [ -n "$pid" ] && alive "$pid" || return 0
    grep -qE "$pat" "/proc/$pid/comm" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do alive "$pid" || { log "stopped $name"; return 0; }; sleep 0.05; done
    kill -KILL "$pid" 2>/dev/null || true
    log "killed $name"
}

stop_all() {
    [ -f "$STATE" ] || { log "nothing to stop (no state file $STATE)"; return 0; }
    local SVC_DIR="" PG_DATA="" REDIS_PID_FILE="" RMQ_PID_FILE="" RMQ_NODENAME="" EPMD_PORT="" EPMD_PID="" S3_PGID="" MAILDEV_PGID=""
    # shellcheck disable=SC1090
    . "$STATE"

    if [ -n "$PG_DATA" ] && [ -f "$PG_DATA/postmaster.pid" ]; then
        local as_pg=(); [ "$(id -u)" -ne 0 ] || as_pg=(runuser -u postgres --)
        local pm; pm=$(head -1 "$PG_DATA/postmaster.pid" 2>/dev/null || true)
        if [ -n "$pm" ] && alive "$pm"; then
            "${as_pg[@]}" "$PG_BIN/pg_ctl" -D "$PG_DATA" stop -m immediate -w -t 20 >/dev/null 2>&1 || true
            kill_pid "$pm" '^postgres$' PostgreSQL   # only if pg_ctl could not stop it
            log "stopped PostgreSQL"
        fi
    fi

    if [ -n "$REDIS_PID_FILE" ] && [ -f "$REDIS_PID_FILE" ]; then
        kill_pid "$(cat "$REDIS_PID_FILE")" '^redis-server' Redis
    fi

    # RabbitMQ takes a few seconds to shut down: do it while the others stop.
    local rmq_stopper=""
    if [ -n "$RMQ_PID_FILE" ]; then
        # The pid file appears a moment after `rabbitmq-server -detached` returns; if start failed
        # before that, find our node by the private epmd port on its command line.
        local beam=""
        [ -f "$RMQ_PID_FILE" ] && beam=$(cat "$RMQ_PID_FILE")
        [ -n "$beam" ] || beam=$(pgrep -f -- "beam.* -epmd_port $EPMD_PORT( |\$)" | head -1 || true)
        if [ -n "$beam" ] && alive "$beam"; then
            (
                ( rabbit_env; timeout 30 "$RMQ_BIN/rabbitmqctl" -q shutdown ) >/dev/null 2>&1 </dev/null || true
                kill_pid "$beam" '^beam' RabbitMQ
                log "stopped RabbitMQ"
            ) &
            rmq_stopper=$!
        fi
    fi

    kill_group "$S3_PGID" s3rver s3rver
    kill_group "$MAILDEV_PGID" maildev maildev
    [ -z "$rmq_stopper" ] || wait "$rmq_stopper" || true
    kill_pid "$EPMD_PID" '^epmd$' epmd   # after RabbitMQ, which is registered with it

    case "$SVC_DIR" in
        /tmp/fleet-test.*) rm -rf "$SVC_DIR" ;;
    esac
    rm -f "$STATE"
}

case "${1:-}" in
    install) install_missing ;;
    start)   install_missing; start_all; print_env ;;
    env)     print_env ;;
    stop)    stop_all ;;
    *) echo "usage: $0 install|start|env|stop   (state file: \$FLEET_TEST_STATE, default /tmp/fleet-test-services.state)" >&2; exit 2 ;;
esac
