"""The sandbox pool: results, limits, isolation between jobs, worker replacement.

Real supervisor processes, real rlimits, real forks; one adversarial test per property,
with the measured values in the failure message. Limits are shrunk so the suite is quick
on 2 shared cores (each shrunk value says why).
"""

from __future__ import annotations

import gc
import os
import signal
import threading
import time
from collections.abc import Iterator

import pytest

from verifiers.sandbox import (
    EventKind,
    SandboxJob,
    SandboxLimits,
    SandboxPool,
    SandboxUnavailable,
    Status,
)

LIMITS = SandboxLimits(
    wall_s=2.0,  # the sleep test waits this long
    cpu_s=1.0,  # the busy-loop test burns this much
    memory_mb=128,  # small enough to hit quickly, above the ~40 MB interpreter
    file_size_mb=1,
    max_output_chars=1000,  # caps are hit with short strings
    static_checks=False,  # these tests exercise the runtime; static checks have their own
)


@pytest.fixture(scope="module")
def pool() -> Iterator[SandboxPool]:
    with SandboxPool(workers=2, limits=LIMITS) as sandbox:
        yield sandbox


def test_value_stdout_stderr_and_literal_flag(pool: SandboxPool) -> None:
    result = pool.run("import sys\nprint('out')\nsys.stderr.write('err')\n[1, (2, 'x')]")
    assert result.status is Status.OK, result
    assert (result.value_repr, result.value_type, result.literal) == ("[1, (2, 'x')]", "list", True)
    assert (result.stdout, result.stderr) == ("out\n", "err")
    assert result.wall_s > 0 and result.cpu_s >= 0, (result.wall_s, result.cpu_s)


@pytest.mark.parametrize(
    ("code", "value"),
    [
        ("x = 2\nx * 3", "6"),
        ("x = 2; x * 4", "8"),  # same line: the worker finds it in the AST
        ("x = 2\nx * 5;", "10"),  # a trailing `;` is not an expression: AST again
        ("x = [1,\n     2]\n(x +\n [3])  # done\n# trailing comment", "[1, 2, 3]"),
        ("def f():\n    return 7\nf()", "7"),
        ("x = 1", None),  # no trailing expression, no value
        ("print('hi')", "None"),
    ],
)
def test_a_trailing_expression_is_the_value(
    pool: SandboxPool, code: str, value: str | None
) -> None:
    result = pool.run(code)
    assert (result.status, result.value_repr) == (Status.OK, value), result


def test_entry_called_with_literal_arguments(pool: SandboxPool) -> None:
    result = pool.run("def f(a, b):\n    return {a: b * 2}", entry="f", args="'k', [1]")
    assert (result.status, result.value_repr) == (Status.OK, "{'k': [1, 1]}"), result


def test_non_literal_value_is_flagged(pool: SandboxPool) -> None:
    result = pool.run("class C:\n    pass\nC()")
    assert result.status is Status.OK and not result.literal, result
    assert result.value_type == "C" and "object at" in (result.value_repr or ""), result


def test_exceptions_are_results_with_the_snippets_traceback(pool: SandboxPool) -> None:
    result = pool.run("def f(x):\n    return 1 // x", entry="f", args="0")
    assert (result.status, result.error_type) == (Status.ERROR, "ZeroDivisionError"), result
    assert 'File "<sandbox>", line 2, in f' in result.stderr, result.stderr
    assert "sandbox_child" not in result.stderr, "harness frames leaked: " + result.stderr


def test_missing_entry_and_bad_arguments_are_errors(pool: SandboxPool) -> None:
    missing, bad = pool.run_many(
        [SandboxJob("x = 1", entry="f"), SandboxJob("def f(x):\n    return x", "f", "len")]
    )
    assert (missing.status, missing.error_type) == (Status.ERROR, "NameError"), missing
    assert (bad.status, bad.error_type) == (Status.ERROR, "ValueError"), bad


def test_wall_clock_timeout(pool: SandboxPool) -> None:
    result = pool.run("import time\ntime.sleep(30)")
    assert result.status is Status.TIMEOUT, result
    assert LIMITS.wall_s <= result.wall_s < LIMITS.wall_s + 1.0, f"wall {result.wall_s:.2f} s"
    assert EventKind.TIMEOUT in result.event_kinds(), result.events


def test_cpu_timeout() -> None:
    # A generous wall clock, so the CPU limit fires first even on a loaded machine.
    with SandboxPool(workers=1, limits=SandboxLimits(cpu_s=1.0, wall_s=20.0)) as patient:
        result = patient.run("while True:\n    pass")
    assert result.status is Status.TIMEOUT, result
    assert "CPU time over 1.0 s" in (result.error_message or ""), result.error_message
    # rusage samples CPU time coarsely (here it has read as low as 0.7 s for a 1 s limit).
    assert result.cpu_s >= 0.5, f"stopped after {result.cpu_s:.2f} s of CPU"


def test_memory_limit(pool: SandboxPool) -> None:
    over, under = pool.run_many([SandboxJob("b = bytearray(200 * 2**20)\nlen(b)"),
                                 SandboxJob("b = bytearray(20 * 2**20)\nlen(b)")])  # fmt: skip
    assert over.status is Status.MEMORY_LIMIT, f"200 MB under a 128 MB limit: {over}"
    assert under.status is Status.OK and under.value_repr == str(20 * 2**20), under


def test_file_size_limit(pool: SandboxPool) -> None:
    code = "with open('data', 'w') as handle:\n    handle.write('x' * {size})\n{size}"
    over, under = pool.run_many(
        [SandboxJob(code.format(size=2 * 2**20)), SandboxJob(code.format(size=100_000))]
    )
    assert over.status is Status.FILE_LIMIT, f"2 MB file under a 1 MB limit: {over}"
    assert under.status is Status.OK, under


def test_open_file_limit() -> None:
    code = "handles = [open(f'f{{i}}', 'w') for i in range({n})]\nlen(handles)"
    with SandboxPool(workers=1, limits=SandboxLimits(max_open_files=8, static_checks=False)) as few:
        under, over = few.run_many([SandboxJob(code.format(n=3)), SandboxJob(code.format(n=12))])
    assert under.value_repr == "3", under
    assert (over.status, over.error_type) == (Status.ERROR, "OSError"), f"12 files open: {over}"
    assert "Too many open files" in (over.error_message or ""), over.error_message


def test_stdout_is_capped(pool: SandboxPool) -> None:
    result = pool.run("for _ in range(100):\n    print('y' * 100)")
    assert result.status is Status.OUTPUT_LIMIT, result
    assert len(result.stdout) == LIMITS.max_output_chars, len(result.stdout)


def test_swallowed_output_overflow_still_counts(pool: SandboxPool) -> None:
    code = (
        "for _ in range(100):\n    try:\n        print('y' * 100)\n"
        "    except BaseException:\n        pass\n1"
    )
    result = pool.run(code)
    assert result.status is Status.OUTPUT_LIMIT, result


def test_value_repr_is_capped(pool: SandboxPool) -> None:
    result = pool.run("'z' * 5000")
    assert result.status is Status.OUTPUT_LIMIT, result
    assert len(result.value_repr or "") == LIMITS.max_output_chars, len(result.value_repr or "")


def test_workdir_is_private_and_wiped(pool: SandboxPool) -> None:
    write = (
        "with open('note.txt', 'w') as handle:\n    handle.write('kept?')\nopen('note.txt').read()"
    )
    results = pool.run_many([SandboxJob(write)] + [SandboxJob("open('note.txt').read()")] * 4)
    assert results[0].value_repr == "'kept?'", results[0]
    leaked = [r for r in results[1:] if r.error_type != "FileNotFoundError"]
    assert not leaked, f"a later job saw the file: {leaked}"


def test_every_job_starts_from_a_clean_interpreter(pool: SandboxPool) -> None:
    poison = "import builtins, math\nbuiltins.len = lambda x: -1\nmath.pi = 3\nlen([1])"
    results = pool.run_many(
        [SandboxJob(poison)] + [SandboxJob("import math\n(len([1, 2]), math.pi)")] * 4
    )
    assert results[0].value_repr == "-1", results[0]
    seen = {r.value_repr for r in results[1:]}
    assert seen == {"(2, 3.141592653589793)"}, f"state leaked between jobs: {seen}"


def test_run_many_keeps_order_and_uses_every_worker(pool: SandboxPool) -> None:
    jobs = [SandboxJob(f"import time\ntime.sleep(0.4)\n{i}") for i in range(4)]
    start = time.monotonic()
    results = pool.run_many(jobs)
    elapsed = time.monotonic() - start
    assert [r.value_repr for r in results] == ["0", "1", "2", "3"], results
    # 4 jobs of 0.4 s on 2 workers: 0.8 s in parallel, 1.6 s if serial.
    assert elapsed < 1.4, f"4 x 0.4 s jobs on 2 workers took {elapsed:.2f} s"


def test_stdlib_that_peeks_at_frames_still_works_under_the_hook() -> None:
    # namedtuple, Enum and TypeVar ask sys._getframe for their module name; the hook answers
    # ValueError, which they handle. The snippet itself gets no frame.
    code = (
        "from collections import namedtuple\nfrom enum import Enum\nfrom typing import TypeVar\n"
        "import sys\nPoint = namedtuple('Point', 'x y')\nColor = Enum('Color', 'RED GREEN')\n"
        "T = TypeVar('T')\ntry:\n    sys._getframe()\n    peek = 'frame'\n"
        "except ValueError:\n    peek = 'refused'\n(Point(1, 2).y, Color.GREEN.value, peek)"
    )
    with SandboxPool(workers=1, limits=SandboxLimits(static_checks=False)) as hooked:
        result = hooked.run(code)
    assert (result.status, result.value_repr) == (Status.OK, "(2, 2, 'refused')"), result
    assert not result.events, result.events


def test_string_sets_print_the_same_on_every_worker(pool: SandboxPool) -> None:
    code = "repr({'apple', 'pear', 'fig', 'kiwi', 'plum', 'date', 'lime'})"
    reprs = {result.value_repr for result in pool.run_many([SandboxJob(code)] * 12)}
    assert len(reprs) == 1, f"hash seeds differ between workers: {reprs}"


@pytest.mark.parametrize(
    ("expected", "candidate", "match"),
    [
        ("1", "1.0", True),
        ("True", "1", False),  # bool is not int
        ("[1, 2]", "[1,2]", True),
        ("(1, 2)", "[1, 2]", False),
        ("{'a': 0.3}", "{'a': 0.30000000000000004}", True),  # floats to 1e-9
        ("0.3", "0.31", False),
        ("{1, 2}", "{2, 1}", True),
        ("'a'", "a", None),  # not a literal
        ("1", "__import__('os')", None),
        ("[" * 500 + "]" * 500, "[]", None),  # too deep to parse
        (str(2**70), str(2**70 + 1), False),  # ints compare exactly, never as floats
    ],
)
def test_compare_literals(
    pool: SandboxPool, expected: str, candidate: str, match: bool | None
) -> None:
    assert pool.compare([(expected, candidate)]) == [match]


def test_oversized_input_is_refused_in_the_host(pool: SandboxPool) -> None:
    huge = "x" * (LIMITS.max_code_chars + 1)
    code, args = pool.run_many([SandboxJob(huge), SandboxJob("def f(a):\n    return a", "f", huge)])
    assert (code.error_type, args.error_type) == ("CodeTooLong", "CodeTooLong"), (code, args)
    assert code.wall_s == 0.0 and args.wall_s == 0.0, "oversized jobs reached a worker"
    assert pool.compare([("1", "1"), ("1", huge)]) == [True, None]


def test_results_are_safe_to_store(pool: SandboxPool) -> None:
    result = pool.run("print('\\ud800')\n'\\ud800'")
    assert result.status is Status.OK, result
    result.stdout.encode("utf-8")  # a lone surrogate would raise here
    assert "\\ud800" in result.stdout, repr(result.stdout)


def test_static_checks_refuse_before_running() -> None:
    with SandboxPool(workers=1) as guarded:
        result = guarded.run("import socket\nsocket.socket()")
    assert result.status is Status.BANNED and result.wall_s == 0.0, result
    assert [e.kind for e in result.events] == [EventKind.BANNED_IMPORT], result.events


def _children_of(pid: int) -> list[int]:
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                children.append(int(entry))
    return children


def _state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def test_killed_supervisor_is_replaced_and_its_child_dies() -> None:
    with SandboxPool(workers=1, limits=LIMITS) as single:
        victim = single.worker_pids[0]
        holder: dict[str, object] = {}
        thread = threading.Thread(
            target=lambda: holder.update(result=single.run("import time\ntime.sleep(1.5)"))
        )
        thread.start()
        deadline = time.monotonic() + 1.0
        while not (children := _children_of(victim)) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert children, "no job child appeared under the supervisor"
        os.kill(victim, signal.SIGKILL)
        thread.join(10)
        result = holder["result"]
        assert result.status is Status.CRASHED, result  # type: ignore[attr-defined]
        assert EventKind.WORKER_LOST in result.event_kinds(), result  # type: ignore[attr-defined]
        time.sleep(0.2)
        alive = [pid for pid in children if _state(pid) not in (None, "Z")]  # Z: dead, unreaped
        assert not alive, f"job children {alive} outlived their supervisor {victim}"
        after = single.run("6 * 7")
        assert after.value_repr == "42" and single.restarts == 1, (after, single.restarts)
        assert single.worker_pids[0] != victim


def test_idle_supervisor_death_is_invisible_to_the_next_job() -> None:
    with SandboxPool(workers=1, limits=LIMITS) as single:
        os.kill(single.worker_pids[0], signal.SIGKILL)
        time.sleep(0.1)
        result = single.run("1 + 1")
        assert (result.status, result.value_repr, single.restarts) == (Status.OK, "2", 1), result


def test_hung_supervisor_is_replaced() -> None:
    # A stopped supervisor answers nothing; the host gives up after wall_s + host_grace_s.
    limits = SandboxLimits(wall_s=0.5, host_grace_s=0.5, static_checks=False)
    with SandboxPool(workers=1, limits=limits) as single:
        stopped = single.worker_pids[0]
        os.kill(stopped, signal.SIGSTOP)
        start = time.monotonic()
        hung = single.run("1")
        waited = time.monotonic() - start
        assert hung.status is Status.CRASHED and "no answer" in (hung.error_message or ""), hung
        assert 1.0 <= waited < 3.0, f"gave up after {waited:.2f} s"
        assert _state(stopped) in (None, "Z"), "the hung supervisor was not killed"
        after = single.run("2")
        assert (after.value_repr, single.restarts) == ("2", 1), (after, single.restarts)


def test_a_forgotten_pool_stops_its_supervisors() -> None:
    forgotten = SandboxPool(workers=2, limits=LIMITS)
    pids = forgotten.worker_pids
    del forgotten
    gc.collect()
    time.sleep(0.2)
    alive = [pid for pid in pids if _state(pid) not in (None, "Z")]
    assert not alive, f"supervisors {alive} outlived their pool"


def test_closed_pool_says_so() -> None:
    closed = SandboxPool(workers=1, limits=LIMITS)
    closed.close()
    with pytest.raises(SandboxUnavailable, match="closed"):
        closed.run("1")


def test_limits_are_validated_with_the_rule_and_the_fix() -> None:
    with pytest.raises(ValueError, match=r"memory_mb \(10\) must be >= 64.*raise it"):
        SandboxLimits(memory_mb=10)
    with pytest.raises(ValueError, match=r"wall_s \(0\) must be > 0"):
        SandboxLimits(wall_s=0)
