#!/usr/bin/env python3
"""Summarise the TRX files of one `dotnet test` run.

usage: trx-report.py RESULTS_DIR DOTNET_TEST_EXIT_CODE [DOTNET_TEST_LOG]

Prints the ten slowest tests, every test that did not pass, and as the last line
`N passed, N failed`. Anything that is not "Passed" (failed, skipped, not executed,
timed out, aborted...) counts as failed, so nothing hides. A non-zero exit code of
`dotnet test` with no failed test in the TRX (build failure, crashed or hung test host)
counts as one more failure, and so does a run in which no test ran, an aborted test run, and
(given the log of `dotnet test`) a "Results File:" announced there that is missing or was
written twice (one project's TRX overwritten by another's).
Exits 0 only when at least one test ran, all passed and `dotnet test` exited 0.
"""
import glob
import os
import re
import sys
import xml.etree.ElementTree as ET

NS = "{http://microsoft.com/schemas/VisualStudio/TeamTest/2010}"
BUILD_ERROR = re.compile(r": error [A-Z]+[0-9]+:")


def seconds(duration: str) -> float:
    # hh:mm:ss.fffffff (hours may exceed 24 in theory; days never appear in practice)
    try:
        h, m, s = duration.split(":")
        return int(h) * 3600 + int(m) * 60 + float(s)
    except ValueError:
        return 0.0


def main() -> int:
    results_dir = sys.argv[1]
    rc = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    results = []  # (name, outcome, seconds, first line of the error message)
    unreadable = []
    run_problems = []  # runs that aborted (crashed or hung test host): their remaining tests never ran
    for path in sorted(glob.glob(os.path.join(results_dir, "**", "*.trx"), recursive=True)):
        try:
            root = ET.parse(path).getroot()
        except ET.ParseError as e:
            unreadable.append(f"{path}: {e}")
            continue
        names = {}
        for test in root.iter(f"{NS}UnitTest"):
            method = test.find(f"{NS}TestMethod")
            if method is not None:
                cls = method.get("className", "")
                names[test.get("id")] = f"{cls}.{method.get('name', '')}" if cls else test.get("name", "")
        res = root.find(f"{NS}Results")
        file_not_passed = 0
        for r in (res if res is not None else []):
            if r.tag != f"{NS}UnitTestResult":
                continue
            name = r.get("testName") or names.get(r.get("testId"), "?")
            msg = ""
            m = r.find(f"{NS}Output/{NS}ErrorInfo/{NS}Message")
            if m is not None and m.text:
                msg = m.text.strip().splitlines()[0][:200]
            results.append((name, r.get("outcome", "?"), seconds(r.get("duration", "0:0:0")), msg))
            file_not_passed += r.get("outcome") != "Passed"
        # A run that aborted (crashed or hung test host, testhost that could not start) may hold
        # no failed result at all: count it, so it cannot pass unnoticed.
        summary = root.find(f"{NS}ResultSummary")
        outcome = summary.get("outcome") if summary is not None else "missing"
        if outcome in ("Aborted", "Error", "Timeout", "missing") or (outcome == "Failed" and not file_not_passed):
            infos = [t.text.strip().splitlines()[0][:300]
                     for t in (summary.iter(f"{NS}Text") if summary is not None else [])
                     if t.text and t.text.strip()]
            run_problems.append(f"{os.path.basename(path)}: test run {outcome}"
                                + (f": {infos[0]}" if infos else ""))

    passed = sum(1 for r in results if r[1] == "Passed")
    failed = len(results) - passed

    if results:
        print("Slowest tests:")
        for name, outcome, secs, _ in sorted(results, key=lambda r: -r[2])[:10]:
            print(f"  {secs:8.3f}s  {name}" + ("" if outcome == "Passed" else f"  [{outcome}]"))
    not_passed = [r for r in results if r[1] != "Passed"]
    if not_passed:
        print(f"Not passed ({len(not_passed)}):")
        for name, outcome, _, msg in not_passed[:50]:
            print(f"  [{outcome}] {name}" + (f": {msg}" if msg else ""))
        if len(not_passed) > 50:
            print(f"  ... and {len(not_passed) - 50} more")
    if len(sys.argv) > 3 and os.path.exists(sys.argv[3]):
        announced = []
        with open(sys.argv[3], errors="replace") as f:
            for line in f:
                if line.startswith("Results File: "):
                    announced.append(os.path.realpath(line[len("Results File: "):].strip()))
        with open(sys.argv[3], errors="replace") as f:
            build_errors = sorted({line.strip() for line in f if BUILD_ERROR.search(line)})
        if build_errors:
            run_problems.append(f"build failed ({len(build_errors)} errors), first: {build_errors[0][:300]}")
        for path in sorted(set(announced)):
            if announced.count(path) > 1:
                run_problems.append(f"{path}: written by {announced.count(path)} test runs, results lost")
            elif not os.path.exists(path):
                run_problems.append(f"{path}: announced but missing")
    for u in unreadable:
        print(f"Unreadable TRX: {u}")
        failed += 1
    for p in run_problems:
        print(p)
        failed += 1
    if not results:
        print(f"No test ran (exit code {rc}: see the output above).")
        failed += 1
    elif rc != 0 and not not_passed and not run_problems and not unreadable:
        print(f"dotnet test exited with code {rc} although every test in the results passed "
              "(crashed or hung test host? see the output above)")
        failed += 1

    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 and rc == 0 else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception:  # never end without the summary line
        import traceback
        traceback.print_exc()
        print("0 passed, 1 failed")
        sys.exit(1)
