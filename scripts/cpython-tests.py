#!/usr/bin/env python3
"""CPython's own test modules under LD_PRELOAD=libgomalloc.so, compared with a plain run.

Issue 16: a preloaded malloc must not change how a program's processes and threads live
and die. CPython's test_threading, test_os, test_subprocess, test_signal and
test_concurrent_futures exercise exactly that (pthread_exit of the last thread, fork from
threads, subprocesses, signals, process pools). They run with `python -m test` (regrtest,
its `-jN` worker processes) under LD_PRELOAD=LIB, and then without the preload as far as
needed to judge what went wrong: the failed test cases alone, or every module when a module
went wrong as a whole or processes were left behind (--plain-always: every module always).
Fails when the preloaded run has

  - a test case that failed or errored there but not in the plain run (read from each
    run's --junit-xml), unless it passes when run again alone under the preload (then it
    is reported as flaky, not counted);
  - a module that crashed, timed out (a hang: regrtest's --timeout ends a worker that
    hangs) or changed the environment, where the plain run's module did not;
  - the whole run past its hard timeout;
  - more processes left behind (found by a marker in their environment, killed) than the
    plain run left.

A test that fails without the preload on this machine may fail with it; nothing more.
Prints the regrtest output as it goes, then one summary line and `N passed, N failed`
(N passed: the test cases that ran under the preload with no new failure). Exit status 1
on any failure, 2 on a usage or set-up error.

Usually run through scripts/cpython-tests.sh (which picks the interpreter and library).
"""

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET

DEFAULT_MODULES = [
    # the longest first, so -j2 runs the others beside it
    "test_concurrent_futures",
    "test_threading",
    "test_os",
    "test_subprocess",
    "test_signal",
]
MARKER = "GOMALLOC_CPYTHON_TESTS"
# "0:00:57 load avg: 0.24 [4/5] test_signal passed (46.7 sec) -- running: test_os (3.3 sec)"
RESULT_LINE = re.compile(r"\[\s*\d+/\d+(?:/\d+)?\] (test_\w+) (.*?)"
                         r"(?: \((?:[\d.]+ (?:hour|min|sec|ms) ?)+\))?(?: -- running: .*)?$")
# Module results whose test cases the junit XML judges: passed, skipped, or failed with
# counts of failures and errors. Anything else (crashed, timed out, env changed, uncaught
# exception, "worker non-zero exit code" in later 3.11 releases, no result) means the module
# as a whole went wrong, typically a hang that regrtest's --timeout ended.
MODULE_NORMAL = re.compile(r"passed|skipped|ran no tests|failed \(\d+ (failures?|errors?)[,)]")


def log(msg):
    print(msg, flush=True)


def marked_pids(token):
    """Processes (any of their threads) whose environment carries our marker."""
    needle = f"{MARKER}={token}".encode()
    found = set()
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        # A zombie leader has no memory to read its environment from; its live threads do.
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/environ", "rb") as f:
                    if needle in f.read().split(b"\0"):
                        found.add(int(pid))
                        break
            except OSError:
                pass
    return found


def describe(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = " ".join(f.read().replace(b"\0", b" ").decode(errors="replace").split())
        with open(f"/proc/{pid}/status") as f:
            st = dict(l.split(":", 1) for l in f if ":" in l)
        return f"pid {pid} [{st['State'].strip()}, {st['Threads'].strip()} threads] {cmd[:120]}"
    except (OSError, KeyError):
        return f"pid {pid}"


def sweep(token):
    """Kills what is left of one run; returns descriptions of the processes it found."""
    # Let processes that are ending finish: test_subprocess's
    # test_run_with_shell_timeout_and_capture_output kills a shell whose `sleep 3` lives on
    # for 3 s, which is not a process left behind.
    deadline = time.monotonic() + 5
    left = marked_pids(token)
    while left and time.monotonic() < deadline:
        time.sleep(0.25)
        left = marked_pids(token)
    desc = [describe(p) for p in sorted(left)]
    for p in left:
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass
    return desc


def run_regrtest(args, mode, modules, xml_path, match=None):
    """One `python -m test` run. Returns (module results, timed_out, leftovers, seconds)."""
    token = f"{os.getpid()}-{mode}-{time.monotonic_ns()}"
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    if mode == "preload":
        env["LD_PRELOAD"] = args.lib
    env[MARKER] = token
    cmd = [args.python, "-m", "test", f"-j{args.jobs}", "--timeout", str(args.module_timeout),
           "--junit-xml", xml_path]
    for m in match or []:
        cmd += ["-m", m]
    cmd += modules
    log(f"--- [{mode}] {' '.join(cmd)}" + (f"  (LD_PRELOAD={args.lib})" if mode == "preload" else ""))
    start = time.monotonic()
    results = {}
    logf = open(os.path.splitext(xml_path)[0] + ".log", "w")
    proc = subprocess.Popen(cmd, env=env, cwd=args.workdir, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True, text=True,
                            errors="replace")

    def pump():
        for line in proc.stdout:
            logf.write(line)
            log(f"[{mode}] {line.rstrip()}")
            m = RESULT_LINE.search(line.rstrip())
            if m:
                results[m.group(1)] = m.group(2)

    # The output is read on a thread: a process left behind that still holds the pipe would
    # block the read forever; the sweep below kills such processes, which ends it.
    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    timed_out = False
    try:
        proc.wait(timeout=args.timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except BaseException:  # Ctrl-C: leave nothing running
        os.killpg(proc.pid, signal.SIGKILL)
        sweep(token)
        raise
    elapsed = time.monotonic() - start
    leftovers = sweep(token)
    reader.join(timeout=10)
    logf.close()
    for d in leftovers:
        log(f"[{mode}] left behind, killed: {d}")
    if timed_out:
        log(f"[{mode}] HARD TIMEOUT after {args.timeout} s: killed")
    return results, timed_out, leftovers, elapsed


def case_outcomes(xml_path):
    """{test id: 'ok' | 'skipped' | 'failure' | 'error'} from regrtest's --junit-xml."""
    out = {}
    if not os.path.exists(xml_path):
        return out
    for tc in ET.parse(xml_path).getroot().iter("testcase"):
        tags = {child.tag for child in tc}
        if "error" in tags:
            out[tc.get("name")] = "error"
        elif "failure" in tags:
            out[tc.get("name")] = "failure"
        elif "skipped" in tags:
            out[tc.get("name")] = "skipped"
        else:
            out[tc.get("name")] = "ok"
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lib", required=True, help="the library to preload")
    ap.add_argument("--python", default="/usr/bin/python3",
                    help="interpreter whose test package runs (default: %(default)s)")
    ap.add_argument("--jobs", type=int, default=2, help="regrtest -j (default: %(default)s)")
    ap.add_argument("--timeout", type=int, default=900,
                    help="hard limit for each whole run, seconds (default: %(default)s)")
    ap.add_argument("--module-timeout", type=int, default=300,
                    help="regrtest --timeout: a module running longer is a hang (default: %(default)s)")
    ap.add_argument("--logdir", default="target/cpython-tests", help="logs and XML (default: %(default)s)")
    ap.add_argument("--preload-only", action="store_true",
                    help="skip the plain run (for showing a hang quickly; compares with nothing)")
    ap.add_argument("--plain-always", action="store_true",
                    help="run every module without the preload too, not only what failed under it")
    ap.add_argument("modules", nargs="*", default=DEFAULT_MODULES)
    args = ap.parse_args()

    args.lib = os.path.abspath(args.lib)
    if not os.path.isfile(args.lib):
        log(f"cpython-tests: {args.lib} does not exist")
        return 2
    check = subprocess.run([args.python, "-c", "import test.libregrtest, test.test_threading"],
                           env={k: v for k, v in os.environ.items() if k != "LD_PRELOAD"},
                           capture_output=True)
    if check.returncode != 0:
        log(f"cpython-tests: {args.python} has no test package "
            "(Debian: apt-get install libpython3.11-testsuite)")
        return 2
    # A module this interpreter does not ship is skipped with a note: pyenv's 3.11.7 lists
    # test_concurrent_futures as a package to split but installs no such directory (a
    # CPython 3.11.7 install bug), and regrtest then fails before running anything.
    probe = subprocess.run(
        [args.python, "-c",
         "import importlib.util, os, sys\n"
         "import test\n"
         "d = os.path.dirname(test.__file__)\n"
         "for m in sys.argv[1:]:\n"
         "    if importlib.util.find_spec('test.' + m) is not None and (\n"
         "            os.path.exists(os.path.join(d, m + '.py')) or os.path.isfile(os.path.join(d, m, '__init__.py'))):\n"
         "        print(m)\n",
         *args.modules],
        env={k: v for k, v in os.environ.items() if k != "LD_PRELOAD"},
        capture_output=True, text=True)
    present = probe.stdout.split()
    for m in args.modules:
        if m not in present:
            log(f"cpython-tests: {args.python} does not ship test.{m}: skipped")
    args.modules = present
    if not args.modules:
        log(f"cpython-tests: {args.python} ships none of the modules")
        return 2
    os.makedirs(args.logdir, exist_ok=True)
    args.logdir = os.path.abspath(args.logdir)
    total_start = time.monotonic()

    bad = ("failure", "error")
    with tempfile.TemporaryDirectory(prefix="gomalloc-cpython-") as workdir:
        args.workdir = workdir

        def run(mode, modules, match=None):
            name = f"{mode}{'-matched' if match else ''}.xml"
            xml_path = os.path.join(args.logdir, name)
            if os.path.exists(xml_path):
                os.unlink(xml_path)
            results, timed_out, leftovers, secs = run_regrtest(args, mode, modules, xml_path,
                                                               match)
            return dict(modules=results, timed_out=timed_out, leftovers=leftovers, secs=secs,
                        cases=case_outcomes(xml_path))

        pre = run("preload", args.modules)
        # The plain run answers one question: does what went wrong under the preload go
        # wrong without it too? With nothing wrong there is nothing to ask; with only test
        # cases failing, those cases alone are run plain; a module that went wrong as a
        # whole, a hard timeout or processes left behind need the whole plain run.
        bad_cases = sorted(t for t, o in pre["cases"].items() if o in bad)
        odd = [m for m in args.modules
               if not MODULE_NORMAL.match(pre["modules"].get(m, "no result"))]
        plain_how = "not run: nothing went wrong under the preload"
        plain = dict(modules={}, timed_out=False, leftovers=[], secs=0, cases={})
        if args.preload_only:
            plain_how = "not run (--preload-only)"
        elif args.plain_always or odd or pre["timed_out"] or pre["leftovers"]:
            plain = run("plain", args.modules)
            plain_how = "the whole run"
        elif bad_cases:
            plain = run("plain", sorted({t.split(".")[1] for t in bad_cases}), match=bad_cases)
            plain_how = f"the {len(bad_cases)} cases that failed under the preload"
        log(f"--- plain run: {plain_how}")
        problems = []

        # Modules that went wrong as a whole (hang, crash, env changed) only under the preload.
        for mod in args.modules:
            p = pre["modules"].get(mod, "has no result (the run was killed)")
            q = plain["modules"].get(mod, "no result")
            if not MODULE_NORMAL.match(p) and p != q:
                problems.append(f"{mod} {p} under the preload (without: {q})")
        if pre["timed_out"]:
            problems.append(f"the preloaded run passed its hard timeout ({args.timeout} s)")
        if len(pre["leftovers"]) > len(plain["leftovers"]):
            problems.append(f"{len(pre['leftovers'])} processes left behind under the preload "
                            f"({len(plain['leftovers'])} without)")

        # Test cases that failed only under the preload; each gets one more run, alone.
        new = sorted(t for t, o in pre["cases"].items()
                     if o in bad and plain["cases"].get(t) not in bad)
        flaky = []
        if new and not args.preload_only:
            log(f"--- {len(new)} test cases failed only under the preload; running them again")
            xml_path = os.path.join(args.logdir, "preload-rerun.xml")
            mods = sorted({t.split(".")[1] for t in new})
            run_regrtest(args, "preload", mods, xml_path, match=new)
            again = case_outcomes(xml_path)
            flaky = [t for t in new if again.get(t) == "ok"]
            new = [t for t in new if t not in flaky]
        for t in new:
            problems.append(f"{t}: {pre['cases'][t]} under the preload, "
                            f"{plain['cases'].get(t, 'not run')} without")

    for t in flaky:
        log(f"flaky (failed once under the preload, passed when run again): {t}")
    for p in problems:
        log(f"FAIL {p}")
    n_pre = len(pre["cases"])
    n_fail_plain = sum(o in bad for o in plain["cases"].values())
    n_fail_pre = sum(o in bad for o in pre["cases"].values())
    failed = len(problems)
    passed = max(n_pre - len(new), 0)
    log(f"cpython-tests ({args.python}, {' '.join(args.modules)}): "
        f"plain ({plain_how}) {len(plain['cases'])} cases, {n_fail_plain} failed, "
        f"{plain['secs']:.0f} s; "
        f"preload {n_pre} cases, {n_fail_pre} failed, {pre['secs']:.0f} s; "
        f"{len(new)} new failures, {len(flaky)} flaky, {failed - len(new)} module/run problems; "
        f"total {time.monotonic() - total_start:.0f} s")
    log(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
