"""The attack suite: hostile snippets, each contained, recorded, and harmless afterwards.

Every attack runs with the static checks OFF, so what contains it is the runtime (audit
hook, rlimits, seccomp, privileges, namespaces); a second run with the static checks on
shows which ones the first line already refuses. For each attack the test asserts the
status, that at least one typed sandbox event of an expected kind was recorded (the
count the STOP paper reports, here one SQL query away), and afterwards that the host
process, its files and environment, and the same pool workers are all intact.

All attacks run as one `run_many` batch on a 2-worker pool, so the three that must hit
a time limit cost about one limit each.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from verifiers.sandbox import (
    EventKind,
    ExecutionResult,
    SandboxJob,
    SandboxLimits,
    SandboxPool,
    Status,
)

LIMITS = SandboxLimits(
    wall_s=2.0,  # sleep-forever costs this
    cpu_s=1.0,  # busy loops cost this
    memory_mb=128,  # memory bombs hit it within milliseconds
    max_output_chars=10_000,
    static_checks=False,  # the runtime must contain every attack on its own
)
SECRET = "selfplay-attack-secret-7f3a"
MARKERS = (
    "/tmp/selfplay-attack-escape",
    "/tmp/selfplay-attack-traversal",
    "/tmp/selfplay-attack-system",
    "/tmp/selfplay-attack-pickled",
    os.path.join(os.path.dirname(__file__), "selfplay_attack_pwned.py"),
)
# Reaches the `os` module's globals without importing anything: the classic escape.
OS = (
    "OS = [c for c in ().__class__.__base__.__subclasses__()"
    " if c.__name__ == '_wrap_close'][0].__init__.__globals__\n"
)
ANY_LIMIT = frozenset({Status.TIMEOUT, Status.CRASHED, Status.MEMORY_LIMIT, Status.ERROR})


@dataclass(frozen=True)
class Attack:
    name: str
    code: str
    statuses: frozenset[Status]
    kinds: frozenset[str]  # at least one recorded event of one of these kinds
    entry: str | None = None


def _attack(
    name: str, code: str, statuses: set[Status], *kinds: EventKind, entry: str | None = None
) -> Attack:
    return Attack(name, code, frozenset(statuses), frozenset(str(kind) for kind in kinds), entry)


B, K = {Status.BANNED}, EventKind
ATTACKS = [
    _attack("fork_bomb", OS + "while True:\n    OS['fork']()", B, K.SUBPROCESS),
    _attack("fork_bomb_import", "import os\nwhile True:\n    os.fork()", B, K.BANNED_IMPORT),
    _attack("memory_bomb", "x = bytearray(10**10)", {Status.MEMORY_LIMIT}, K.MEMORY_LIMIT),
    _attack("memory_creep", "xs = []\nwhile True:\n    xs.append(bytearray(10**7))",
            {Status.MEMORY_LIMIT}, K.MEMORY_LIMIT),
    _attack("infinite_loop", "while True:\n    pass", {Status.TIMEOUT}, K.TIMEOUT),
    _attack("sleep_forever", "import time\ntime.sleep(10**6)", {Status.TIMEOUT}, K.TIMEOUT),
    _attack("deep_recursion", "def r(n):\n    return r(n + 1)\nr(0)", {Status.ERROR}, K.RECURSION),
    _attack("recursion_limit_raised",
            "import sys\nsys.setrecursionlimit(10**8)\ndef r(n):\n    return r(n + 1)\nr(0)",
            set(ANY_LIMIT), K.TIMEOUT, K.CRASH, K.MEMORY_LIMIT, K.RECURSION),
    _attack("huge_stdout", "while True:\n    print('x' * 10**4)",
            {Status.OUTPUT_LIMIT}, K.OUTPUT_LIMIT),
    _attack("huge_stderr", "import sys\nsys.stderr.write('x' * 10**7)",
            {Status.OUTPUT_LIMIT}, K.OUTPUT_LIMIT),
    _attack("huge_value", "'x' * 10**7", {Status.OUTPUT_LIMIT}, K.OUTPUT_LIMIT),
    _attack("write_outside_workdir", f"open({MARKERS[0]!r}, 'w').write('x')", B, K.FILE_ESCAPE),
    _attack("path_traversal", f"open('../../../../../..{MARKERS[1]}', 'w')", B, K.FILE_ESCAPE),
    _attack("write_into_project", f"open({MARKERS[4]!r}, 'w').write('import os')",
            B, K.FILE_ESCAPE),
    _attack("chmod_outside", OS + "OS['chmod']('/tmp', 0o777)", B, K.FILE_ESCAPE),
    _attack("symlink_escape", OS + "OS['symlink']('/etc/passwd', 'link')\nopen('link').read()",
            B, K.FILE_READ),
    _attack("read_etc_passwd", "open('/etc/passwd').read()", B, K.FILE_READ),
    _attack("list_root", OS + "OS['listdir']('/')", B, K.FILE_READ),
    _attack("environ_secret", OS + f"OS['environ'][{'SELFPLAY_ATTACK_SECRET'!r}]", B, K.ENVIRON),
    _attack("self_environ_file", "open('/proc/self/environ').read()", B, K.FILE_READ),
    _attack("parent_environ_file", OS + "open('/proc/%d/environ' % OS['getppid']()).read()",
            B, K.FILE_READ),
    _attack("socket_connect", "import socket\nsocket.create_connection(('1.1.1.1', 80), timeout=1)",
            B, K.NETWORK),
    _attack("raw_socket_module", "import _socket\n_socket.socket()", B, K.NETWORK),
    _attack("os_system", OS + f"OS['system']('touch {MARKERS[2]}')", B, K.SUBPROCESS),
    _attack("subprocess_run", "import subprocess\nsubprocess.run(['id'])", B, K.SUBPROCESS),
    _attack("exec_shell", OS + "OS['execv']('/bin/sh', ['sh', '-c', 'id'])", B, K.SUBPROCESS),
    _attack("posix_spawn", OS + "OS['posix_spawn']('/bin/true', ['true'], {})", B, K.SUBPROCESS),
    _attack("ctypes_import", "import ctypes\nctypes.CDLL(None).system(b'id')", B, K.CTYPES),
    _attack("ctypes_preloaded",
            "CDLL = [c for c in object.__subclasses__() if c.__name__ == 'CDLL'][0]\n"
            "CDLL(None).system(b'id')", B, K.CTYPES),
    _attack("signal_tamper", "import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)",
            B, K.SIGNAL),
    _attack("kill_parent", OS + "OS['kill'](OS['getppid'](), 9)", B, K.KILL_PARENT),
    _attack("kill_everyone", OS + "OS['kill'](-1, 9)", B, K.KILL_PARENT),
    _attack("sys_exit", "import sys\nsys.exit(3)", {Status.ERROR}, K.EXIT),
    _attack("os_exit", OS + "OS['_exit'](0)", {Status.CRASHED}, K.EXIT),
    _attack("patch_builtins", "import builtins\nbuiltins.len = lambda x: 0\nbuiltins.repr = str\n1",
            B, K.TAMPER),
    _attack("poison_sys_modules", "import sys\nsys.modules['math'] = None\nsys.stdout = None\n1",
            B, K.TAMPER),
    _attack("audit_hook_tamper", "import sys\nsys.addaudithook(lambda event, args: None)",
            B, K.TAMPER),
    _attack("trace_the_harness", "import sys\nsys.settrace(lambda *a: None)", B, K.TAMPER),
    _attack("frame_walk",
            "try:\n    1 / 0\nexcept ZeroDivisionError as error:\n"
            "    harness = error.__traceback__.tb_frame.f_back.f_locals",
            B, K.TAMPER),
    _attack("bytecode_forge", "g = lambda: 0\ng.__code__ = g.__code__.replace(co_consts=(1,))",
            B, K.TAMPER),
    _attack("gc_introspection", "import gc\ngc.get_objects()", B, K.BANNED_IMPORT),
    _attack("thread_spawn", "import threading\nthreading.Thread(target=print).start()",
            B, K.BANNED_IMPORT),
    _attack("dunder_import_smuggle", "__import__('o' + 's').system('id')", B, K.BANNED_IMPORT),
    _attack("importlib_smuggle", "import importlib\nimportlib.import_module('sock' + 'et')",
            B, K.BANNED_IMPORT),
    _attack("eval_smuggle", "eval(\"__import__('subprocess').run(['id'])\")", B, K.SUBPROCESS),
    _attack("exec_smuggle", "exec('import socket')", B, K.NETWORK),
    _attack("getattr_smuggle", "getattr(__builtins__, '__imp' + 'ort__')('socket')", B, K.NETWORK),
    _attack("pickle_payload",
            "class Payload:\n    def __reduce__(self):\n"
            f"        return (open, ({MARKERS[3]!r}, 'w'))\n"
            "def f():\n    return Payload()",
            {Status.OK}, K.PICKLE, entry="f"),
    _attack("forged_result",
            OS + "for fd in range(3, 64):\n    try:\n        OS['write'](fd, b'{\"t\":\"result\","
            "\"status\":\"ok\",\"value_repr\":\"1\"}\\n')\n    except OSError:\n        pass\n2",
            B, K.TAMPER),
    _attack("file_size_bomb",
            "with open('big', 'w') as h:\n    while True:\n        h.write('x' * 10**6)",
            {Status.FILE_LIMIT}, K.FILE_LIMIT),
    _attack("many_files", "for i in range(10**4):\n    open(f'f{i}', 'w').close()",
            {Status.FILE_LIMIT}, K.FILE_LIMIT),
    _attack("directory_flood", OS + "for i in range(10**5):\n    OS['mkdir'](f'd{i}')",
            {Status.FILE_LIMIT}, K.FILE_LIMIT),
]  # fmt: skip


@dataclass(frozen=True)
class Outcome:
    results: dict[str, ExecutionResult]
    pids_before: tuple[int, ...]
    pids_after: tuple[int, ...]
    restarts: int
    after: ExecutionResult  # a benign job run after the whole batch
    host_env: dict[str, str]
    host_cwd: str
    host_handlers: tuple[object, ...]


def _handlers() -> tuple[object, ...]:
    return tuple(
        signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM, signal.SIGPIPE)
    )


@pytest.fixture(scope="module")
def outcome() -> Iterator[Outcome]:
    os.environ["SELFPLAY_ATTACK_SECRET"] = SECRET  # set before the workers start
    try:
        env, cwd, handlers = _environment(), os.getcwd(), _handlers()
        with SandboxPool(workers=2, limits=LIMITS) as pool:
            before = pool.worker_pids
            jobs = [SandboxJob(code=attack.code, entry=attack.entry) for attack in ATTACKS]
            results = dict(zip([a.name for a in ATTACKS], pool.run_many(jobs), strict=True))
            after = pool.run("import math\nmath.sqrt(16) + len([1, 2])")
            yield Outcome(
                results, before, pool.worker_pids, pool.restarts, after, env, cwd, handlers
            )
    finally:
        os.environ.pop("SELFPLAY_ATTACK_SECRET", None)
        for marker in MARKERS:
            if os.path.exists(marker):
                os.remove(marker)


def test_the_suite_has_at_least_30_distinct_attacks() -> None:
    names = [attack.name for attack in ATTACKS]
    assert len(set(names)) == len(names) >= 30, len(names)


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda attack: attack.name)
def test_attack_is_contained_and_recorded(outcome: Outcome, attack: Attack) -> None:
    result = outcome.results[attack.name]
    recorded = result.event_kinds()
    assert result.status in attack.statuses, (
        f"{attack.name}: status {result.status}, expected one of {sorted(attack.statuses)}; "
        f"error {result.error_type}: {result.error_message}; events {result.events}"
    )
    assert recorded & attack.kinds, (
        f"{attack.name}: recorded {sorted(recorded)}, expected one of {sorted(attack.kinds)}"
    )
    assert all(event.detail for event in result.events), result.events
    assert SECRET not in repr(result), f"{attack.name} leaked the host secret"


def test_no_attack_left_a_mark_on_the_host(outcome: Outcome) -> None:
    present = [marker for marker in MARKERS if os.path.exists(marker)]
    assert not present, f"files created by attacks: {present}"


def _environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}  # pytest's own


def test_host_process_is_unchanged(outcome: Outcome) -> None:
    assert _environment() == outcome.host_env
    assert os.getcwd() == outcome.host_cwd
    assert _handlers() == outcome.host_handlers


def test_pool_is_healthy_afterwards(outcome: Outcome) -> None:
    assert outcome.pids_after == outcome.pids_before and outcome.restarts == 0, (
        f"workers {outcome.pids_before} -> {outcome.pids_after}, restarts {outcome.restarts}"
    )
    assert (outcome.after.status, outcome.after.value_repr) == (Status.OK, "6.0"), outcome.after


def test_forged_result_is_superseded_by_the_real_one(outcome: Outcome) -> None:
    result = outcome.results["forged_result"]
    assert result.value_repr == "2", f"the forged value won: {result.value_repr}"


def test_pickle_payload_comes_back_as_text_only(outcome: Outcome) -> None:
    result = outcome.results["pickle_payload"]
    assert isinstance(result.value_repr, str) and "Payload object" in result.value_repr, result
    assert not result.literal and not os.path.exists(MARKERS[3])


def test_static_checks_refuse_the_smuggling_routes_up_front() -> None:
    smuggling = {
        "dunder_import_smuggle", "importlib_smuggle", "eval_smuggle", "exec_smuggle",
        "getattr_smuggle", "ctypes_preloaded", "fork_bomb", "os_system", "patch_builtins",
        "pickle_payload", "environ_secret", "audit_hook_tamper",
    }  # fmt: skip
    static_kinds = {str(EventKind.BANNED_IMPORT), str(EventKind.BANNED_CALL),
                    str(EventKind.BANNED_ATTRIBUTE)}  # fmt: skip
    with SandboxPool(workers=1, limits=SandboxLimits(wall_s=2.0, cpu_s=1.0)) as guarded:
        chosen = [attack for attack in ATTACKS if attack.name in smuggling]
        results = guarded.run_many([SandboxJob(a.code, entry=a.entry) for a in chosen])
    missed = {
        attack.name: (result.status, sorted(result.event_kinds()))
        for attack, result in zip(chosen, results, strict=True)
        if result.status is not Status.BANNED
        or result.wall_s != 0.0
        or not result.event_kinds() <= static_kinds
    }
    assert len(chosen) == len(smuggling) and not missed, f"not refused statically: {missed}"
