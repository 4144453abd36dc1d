#!/usr/bin/env bash
# The one test command: installs what is missing, starts PostgreSQL, Redis, RabbitMQ, s3rver and
# maildev on free loopback ports (deploy/test/services.sh), runs `dotnet test Fleet.sln`, stops
# everything it started and prints the ten slowest tests, then as the last line `N passed, N failed`.
#
#   deploy/test/run-tests.sh                                  # everything
#   deploy/test/run-tests.sh --filter "FullyQualifiedName~Scheduler"   # extra args go to dotnet test
#
# Exit code 0 only when at least one test ran and every test passed (skipped counts as failed).
# TRX files are left in TestResults/ at the repository root.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
services="$here/services.sh"
RESULTS="$repo/TestResults"
t_start=$SECONDS
rm -rf "$RESULTS"   # so the report never reads an earlier run's TRX files

# A state file of our own, so a developer's `services.sh start` set is never touched.
FLEET_TEST_STATE=$(mktemp /tmp/fleet-test-run.XXXXXXXX)
rm -f "$FLEET_TEST_STATE"
export FLEET_TEST_STATE

test_rc=1
reported=0
# shellcheck disable=SC2317  # invoked by the EXIT trap
finish() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -f "$FLEET_TEST_STATE" ]; then
        echo "== stopping services" >&2
        bash "$services" stop || true
    fi
    if [ "$reported" -eq 0 ]; then
        # Interrupted, or services did not start: still end with the summary line.
        [ "$rc" -ne 0 ] || rc=1
        python3 "$here/trx-report.py" "$RESULTS" "$rc"
        [ $? -lt 2 ] || echo "0 passed, 1 failed"   # the report itself could not run
    fi
    exit "$rc"
}
trap finish EXIT
trap 'echo "interrupted" >&2; exit 130' INT
trap 'echo "terminated" >&2; exit 143' TERM

echo "== installing what is missing" >&2
bash "$services" install || exit 1

echo "== starting services" >&2
t_svc=$SECONDS
exports=$(bash "$services" start) || exit 1
eval "$exports"
svc_secs=$((SECONDS - t_svc))
echo "== services up in ${svc_secs}s: PostgreSQL $PGPORT, Redis $FLEET_TEST_REDIS, RabbitMQ $FLEET_TEST_RABBITMQ, S3 $FLEET_TEST_S3, SMTP $FLEET_TEST_SMTP, maildev $FLEET_TEST_MAILDEV" >&2

echo "== dotnet test $*" >&2
t_test=$SECONDS
cd "$repo" || exit 1
mkdir -p "$RESULTS"
# Output is also kept in TestResults/dotnet-test.log: the report checks that every
# "Results File:" announced there exists (none overwritten by another project's).
dotnet test Fleet.sln -c Release --logger trx --results-directory "$RESULTS" \
    --blame-hang-timeout 5m --blame-hang-dump-type mini "$@" 2>&1 | tee "$RESULTS/dotnet-test.log"
test_rc=${PIPESTATUS[0]}
test_secs=$((SECONDS - t_test))

echo "== stopping services" >&2
bash "$services" stop || true

echo "== timings: services start ${svc_secs}s, dotnet test ${test_secs}s, total $((SECONDS - t_start))s"
python3 "$here/trx-report.py" "$RESULTS" "$test_rc" "$RESULTS/dotnet-test.log"
report_rc=$?
reported=1
exit "$report_rc"
