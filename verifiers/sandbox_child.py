"""The per-job child: confine the freshly forked process, run one snippet, report, exit.

The supervisor forks this child from a warm, pre-imported interpreter for every job, so
no state -- monkey-patched builtins, leaked globals, a poisoned module -- survives from one
job to the next. The supervisor has already applied, once, everything that is the same
for every child (stdio on /dev/null, an empty environment, the address-space, file-size
and core rlimits, supplementary groups and gid, dangerous modules dropped from
sys.modules): the child inherits it for free. Per job, in order: a new session; every
inherited fd closed but the result pipe; a private working directory; RLIMIT_CPU,
RLIMIT_NOFILE and RLIMIT_NPROC=0; the seccomp deny filter (with no_new_privs when not
root); setuid to the sandbox user when running as root; death with the supervisor (set
after setuid, which clears it); an os.environ that refuses reads; and last the audit
hook (sandbox_audit), built by the supervisor and only installed here.
The snippet then runs with capped stdout/stderr; afterwards the child compares builtins
and sys.modules with the supervisor's snapshot to record rebinding. It reports only plain
JSON text -- repr() and str() of the value, never the object -- so nothing
model-controlled is unpickled anywhere.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import gc
import io
import math
import os
import resource
import signal
import sys
from _json import encode_basestring_ascii as _json_string
from dataclasses import dataclass, field
from typing import Any, NoReturn

import sandbox_linux
from sandbox_audit import (
    ENVIRON_EVENT,
    AuditHook,
    AuditPolicy,
    SandboxViolation,
    build_audit_hook,
)
from sandbox_protocol import BLOCKING_KINDS, EventKind, Status, write_all

MAX_EVENTS = 32
_LITERAL_ATOMS = (int, float, complex, str, bytes, bool, type(None))
_PICKLE_HOOKS = ("__reduce__", "__reduce_ex__", "__setstate__", "__getnewargs__")
_LITERAL_NODE_BUDGET = 200_000
_VALUE_STR_CHARS = 1000
# (label, live namespace, copy of it): what a snippet must not rebind.
Snapshot = list[tuple[str, dict[str, Any], dict[str, Any]]]


class OutputLimitExceeded(BaseException):
    """A BaseException so that a snippet's `except Exception` cannot swallow it."""


@dataclass(frozen=True)
class ChildContext:
    """Everything a child needs, built once by the supervisor before any fork (`prepare`):
    a child then allocates almost nothing, and each child starts from the same untouched
    state -- an armed hook with no files counted, a reporter that has seen no event."""

    limits: dict[str, Any]
    run_as: tuple[int, int] | None  # (uid, gid) to switch to, when the supervisor is root
    seccomp: sandbox_linux.SeccompFilter | None
    supervisor_pid: int
    cpu_rlimit: tuple[int, int]
    files_rlimit: tuple[int, int]
    reporter: _Reporter
    audit_hook: AuditHook | None  # None only when the hook is switched off to test the OS layer
    environs: tuple[dict[str, Any], dict[str, Any]]  # stand-ins for os.environ(b)
    snapshot: Snapshot = field(default_factory=list)


def prepare(
    limits: dict[str, Any],
    run_as: tuple[int, int] | None,
    seccomp: sandbox_linux.SeccompFilter | None,
    audit: AuditPolicy | None,
) -> ChildContext:
    cpu = max(1, math.ceil(float(limits["cpu_s"])))
    reporter = _Reporter()
    protected = (_WatchedEnviron, _CappedStream, _Reporter)
    return ChildContext(
        limits=limits,
        run_as=run_as,
        seccomp=seccomp,
        supervisor_pid=os.getpid(),
        cpu_rlimit=(cpu, cpu + 1),  # SIGXCPU at the soft limit, SIGKILL a second later
        files_rlimit=(int(limits["max_open_files"]),) * 2,
        reporter=reporter,
        audit_hook=None if audit is None else build_audit_hook(audit, reporter.event, protected),
        environs=(_WatchedEnviron(), _WatchedEnviron()),
        snapshot=interpreter_snapshot(),
    )


class _CappedStream(io.TextIOBase):
    def __init__(self, cap: int) -> None:
        self._parts: list[str] = []
        self._size = 0
        self._cap = cap
        self.overflowed = False

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        text = _exact(text)  # a str subclass could lie about its len()
        room = self._cap - self._size
        if len(text) > room:
            self._parts.append(text[:room])
            self._size = self._cap
            self.overflowed = True
            raise OutputLimitExceeded(f"output exceeds {self._cap} characters")
        self._parts.append(text)
        self._size += len(text)
        return len(text)

    def writable(self) -> bool:
        return True

    def getvalue(self) -> str:
        return "".join(self._parts)


class _Reporter:
    """Streams events to the supervisor as they happen, so a later SIGKILL cannot lose them.

    `event` is a closure over everything it uses (the C JSON string encoder, os.write, the
    dedupe set), bound here: a snippet that rebinds this module's globals or builtins
    cannot silence it, and it is reachable only from the audit hook and the harness.
    """

    def __init__(self) -> None:
        self.fd = [-1]  # the result pipe, set by the child
        self.flags = {"blocked": False, "file_limit": False}
        self.event = _event_writer(self.fd, self.flags)

    @property
    def blocked(self) -> bool:
        return self.flags["blocked"]

    @property
    def file_limit(self) -> bool:
        return self.flags["file_limit"]

    def send(self, message: dict[str, Any]) -> None:
        line = _json(message) + "\n"
        write_all(self.fd[0], line.encode("ascii"))


def _event_writer(fd: list[int], flags: dict[str, bool]) -> Any:
    seen: set[tuple[str, str]] = set()
    exact, max_events = _exact, MAX_EVENTS
    blocking, file_limit, encode, write = (
        BLOCKING_KINDS,
        EventKind.FILE_LIMIT,
        _json_string,
        os.write,
    )
    _str, _len = str, len

    def event(kind: EventKind, detail: str) -> None:
        if kind in blocking:
            flags["blocked"] = True
        if kind is file_limit:
            flags["file_limit"] = True
        key = (_str(kind), exact(detail)[:300])
        if key in seen or _len(seen) >= max_events:
            return
        seen.add(key)
        line = f'{{"t":"event","kind":{encode(key[0])},"detail":{encode(key[1])}}}\n'
        data = line.encode("ascii")
        while data:  # a pipe write may be partial
            data = data[write(fd[0], data) :]

    return event


def _exact(text: str) -> str:
    """An exact str with the same characters: no overridden methods of a str subclass."""
    return text if type(text) is str else "".join([text])


def _json(value: Any) -> str:
    """A small JSON encoder, so a snippet that patched the json module cannot corrupt reports."""
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else "null"
    if isinstance(value, str):
        return _json_string(value)  # the C encoder, bound at import, immune to patching
    if isinstance(value, list | tuple):
        return "[" + ",".join(_json(item) for item in value) + "]"
    return "{" + ",".join(f"{_json_string(k)}:{_json(v)}" for k, v in value.items()) + "}"


class _WatchedEnviron(dict):  # type: ignore[type-arg]
    """Stands in for os.environ: the environment is already scrubbed, and any read of it
    raises the audit event that the hook refuses and records, since a snippet has no
    business there. sys.audit and the event name sit in default arguments, bound now:
    rebinding sys.audit or this module's globals cannot quiet it, and the hook refuses
    replacing these methods or their defaults."""

    def __getitem__(self, key: Any, _audit: Any = sys.audit, _event: str = ENVIRON_EVENT) -> Any:
        _audit(_event, f"[{key!r}]")

    def get(
        self, key: Any, default: Any = None, _audit: Any = sys.audit, _event: str = ENVIRON_EVENT
    ) -> Any:
        _audit(_event, f".get({key!r})")

    def __contains__(
        self, key: object, _audit: Any = sys.audit, _event: str = ENVIRON_EVENT
    ) -> bool:
        _audit(_event, f"contains {key!r}")
        return False

    def __iter__(self, _audit: Any = sys.audit, _event: str = ENVIRON_EVENT) -> Any:
        _audit(_event, "iteration")

    def keys(self, _audit: Any = sys.audit, _event: str = ENVIRON_EVENT) -> Any:
        _audit(_event, ".keys()")

    def items(self, _audit: Any = sys.audit, _event: str = ENVIRON_EVENT) -> Any:
        _audit(_event, ".items()")

    def values(self, _audit: Any = sys.audit, _event: str = ENVIRON_EVENT) -> Any:
        _audit(_event, ".values()")

    def copy(self, _audit: Any = sys.audit, _event: str = ENVIRON_EVENT) -> Any:
        _audit(_event, ".copy()")

    def __repr__(self, _audit: Any = sys.audit, _event: str = ENVIRON_EVENT) -> str:
        _audit(_event, "repr")
        return "{}"


def child_main(
    job: dict[str, Any], context: ChildContext, result_fd: int, workdir: str
) -> NoReturn:
    """Entry point right after fork(); never returns."""
    try:
        _confine(context, result_fd, workdir)
        reporter = context.reporter
        reporter.fd[0] = result_fd
        disarm = _no_hook
        if context.audit_hook is not None:
            # The environment is already empty: these only refuse and record reads of it.
            os.environ, os.environb = context.environs  # type: ignore[assignment]  # noqa: B003
            context.audit_hook.install(workdir)
            disarm = context.audit_hook.disarm
        if job.get("kind") == "compare":
            outcome = _run_compare(job["pairs"])
        else:
            outcome = _run_exec(job, context.limits, reporter, context.snapshot, disarm)
        reporter.send({"t": "result", **outcome})
        os._exit(0)
    except BaseException:  # noqa: BLE001 - a child must never return into the supervisor's loop
        os._exit(70)


def _no_hook() -> None:
    """disarm() when the audit hook is switched off."""


def _confine(context: ChildContext, result_fd: int, workdir: str) -> None:
    # Already done once by the supervisor and inherited: stdio on /dev/null, an empty
    # environment, the other rlimits, SIGXFSZ, supplementary groups and gid.
    os.setsid()
    # Above all the supervisor's pipes to the host: a snippet must not write frames there.
    os.closerange(3, result_fd)
    os.closerange(result_fd + 1, 1 << 20)
    os.chdir(workdir)
    resource.setrlimit(resource.RLIMIT_CPU, context.cpu_rlimit)
    resource.setrlimit(resource.RLIMIT_NOFILE, context.files_rlimit)
    resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
    # (The random module reseeds itself after fork, so forks do not share PRNG draws.)
    if context.seccomp is not None and os.geteuid() == 0:
        # Root may load a filter without no_new_privs; exec is refused by the filter anyway.
        context.seccomp.install()
    if context.run_as is not None:
        uid, gid = context.run_as
        os.setuid(uid)
        if (os.getuid(), os.geteuid(), os.getgid(), os.getgroups()) != (uid, uid, gid, []):
            os._exit(72)
    if context.seccomp is not None and os.geteuid() != 0:
        sandbox_linux.no_new_privileges()
        context.seccomp.install()
    # After setuid: a change of credentials clears the parent-death signal.
    sandbox_linux.die_with_parent(signal.SIGKILL)
    if os.getppid() != context.supervisor_pid:
        os._exit(71)  # the supervisor died before the child could follow it


def _parse_args(args: str | None) -> tuple[Any, ...]:
    if args is None or not args.strip():
        return ()
    parsed = ast.literal_eval(f"({args},)")
    if not isinstance(parsed, tuple):
        raise ValueError("arguments must be a comma-separated list of Python literals")
    return parsed


def _run_exec(
    job: dict[str, Any],
    limits: dict[str, Any],
    reporter: _Reporter,
    snapshot: Snapshot,
    disarm: Any,
) -> dict[str, Any]:
    cap = int(limits["max_output_chars"])
    stdout, stderr = _CappedStream(cap), _CappedStream(cap)
    sys.stdout = sys.__stdout__ = stdout  # type: ignore[misc,assignment]
    sys.stderr = sys.__stderr__ = stderr  # type: ignore[misc,assignment]
    sys.stdin = sys.__stdin__ = io.StringIO("")  # type: ignore[misc,assignment]
    outcome: dict[str, Any] = {"status": Status.OK.value}
    watched = _snapshot(snapshot)
    error: BaseException | None = None
    try:
        outcome.update(_run_snippet(job, cap, reporter))
    except BaseException as raised:  # noqa: BLE001 - every way a snippet ends is a result
        error = raised
        outcome.update(_describe_error(raised, reporter))
    # From here on only the harness runs: no collection may call a snippet's __del__ while
    # frames are reachable again, and the traceback needs them.
    gc.disable()
    disarm()
    if error is not None and not isinstance(error, OutputLimitExceeded | MemoryError):
        with contextlib.suppress(BaseException):  # a full stderr keeps what it holds
            stderr.write(_sandbox_traceback(error, job["code"], outcome["error_message"]))
    rebound = _rebound(watched)
    if rebound:
        reporter.event(EventKind.TAMPER, "rebinds " + ", ".join(rebound[:6]))
    if stdout.overflowed or stderr.overflowed:
        outcome["status"] = Status.OUTPUT_LIMIT.value
    if reporter.file_limit:
        outcome["status"] = Status.FILE_LIMIT.value
    if reporter.blocked:
        outcome["status"] = Status.BANNED.value
    if outcome["status"] == Status.OUTPUT_LIMIT.value:
        reporter.event(EventKind.OUTPUT_LIMIT, f"more than {cap} characters of output")
    outcome["stdout"] = stdout.getvalue()
    outcome["stderr"] = stderr.getvalue()
    return outcome


def _run_snippet(job: dict[str, Any], cap: int, reporter: _Reporter) -> dict[str, Any]:
    """Run the code (then `entry(*args)`) and describe the value; raises what it raises."""
    entry: str | None = job.get("entry")
    namespace: dict[str, Any] = {"__name__": "__sandbox__", "__builtins__": builtins}
    body, last = _split(job["code"], job.get("tail") if entry is None else None)
    exec(body, namespace)
    if entry is not None:
        function = namespace.get(entry)
        if not callable(function):
            raise NameError(f"entry function {entry!r} is not defined")
        return _describe_value(function(*_parse_args(job.get("args"))), cap, reporter)
    if last is not None:
        return _describe_value(eval(last, namespace), cap, reporter)
    return {}


def _split(code: str, tail: int | None) -> tuple[Any, Any]:
    """Compiled (body, trailing expression or None). The host found the line where the
    trailing expression starts; compiling the two parts straight from the source spares
    building an AST here. -1: the host could not cut by lines, so use the AST."""
    if tail is not None and tail > 0:
        lines = code.split("\n")
        head, rest = "\n".join(lines[: tail - 1]), "\n".join(lines[tail - 1 :])
        try:
            # Blank lines in front keep the tail's line numbers right in tracebacks.
            last = compile("\n" * (tail - 1) + rest, "<sandbox>", "eval")
        except SyntaxError:  # e.g. a trailing `;`: fall back to the AST
            tail = -1
        else:
            return compile(head, "<sandbox>", "exec"), last
    if tail == -1:
        tree = ast.parse(code, "<sandbox>", "exec")
        expression = ast.Expression(tree.body.pop().value)  # type: ignore[attr-defined]
        return compile(tree, "<sandbox>", "exec"), compile(expression, "<sandbox>", "eval")
    return compile(code, "<sandbox>", "exec"), None


_WATCHED_MODULES = ("builtins", "sys", "math", "json", "re", "collections", "functools")
# The builtins the harness and most snippets lean on; watching all ~160 would copy-on-write
# a page per object touched, in every child.
_WATCHED_BUILTINS = (
    "__import__", "__build_class__", "repr", "str", "int", "float", "bool", "type",
    "isinstance", "len", "callable", "print", "eval", "exec", "compile", "open", "getattr",
    "setattr", "iter", "next", "range", "sorted", "sum", "min", "max", "list", "dict",
)  # fmt: skip
_WATCHED_SYS = ("modules", "path", "meta_path", "path_hooks", "stdout", "stderr", "excepthook")


def interpreter_snapshot() -> Snapshot:
    """Key builtins and sys.modules entries as the supervisor leaves them, taken once
    before any fork: a child compares against the copy it inherits. (Not every module:
    each module object sits on its own page, and touching it after fork costs a
    copy-on-write fault.)"""
    modules = {name: sys.modules[name] for name in _WATCHED_MODULES if name in sys.modules}
    names = vars(builtins)
    return [
        ("builtins.", names, {name: names[name] for name in _WATCHED_BUILTINS}),
        ("sys.modules:", sys.modules, modules),
    ]


def _snapshot(inherited: Snapshot) -> Snapshot:
    """What a snippet could monkey-patch to fool the harness that reports on it."""
    return [*inherited, ("sys.", vars(sys), {name: getattr(sys, name) for name in _WATCHED_SYS})]


def _rebound(snapshot: Snapshot) -> list[str]:
    """Names whose binding changed or vanished since the snapshot (additions are fine)."""
    missing = object()
    return [
        prefix + name
        for prefix, live, before in snapshot
        for name, value in before.items()
        if live.get(name, missing) is not value
    ]


def _describe_value(value: Any, cap: int, reporter: _Reporter) -> dict[str, Any]:
    described: dict[str, Any] = {"value_type": type(value).__name__[:100]}
    literal = _is_literal(value)
    if not literal and _defines_pickle_hooks(type(value)):
        reporter.event(EventKind.PICKLE, f"returned a {type(value).__name__} with pickle hooks")
    text = _exact(repr(value))  # repr() itself guarantees a str, maybe a subclass
    if len(text) > cap:
        described["status"] = Status.OUTPUT_LIMIT.value
        text = text[:cap]
    described["value_repr"] = text
    described["literal"] = literal
    try:
        # str() as well: Fraction prints as 3/4, Decimal without its quotes (maths answers).
        described["value_str"] = _exact(str(value))[:_VALUE_STR_CHARS]
    except Exception:  # noqa: BLE001 - a hostile __str__ costs only this field
        described["value_str"] = None
    return described


def _defines_pickle_hooks(kind: type) -> bool:
    """A class of the snippet's own (not Fraction, deque...) that customises unpickling."""
    return any(
        getattr(klass, "__module__", None) == "__sandbox__"
        and any(hook in vars(klass) for hook in _PICKLE_HOOKS)
        for klass in kind.__mro__
    )


def _describe_error(error: BaseException, reporter: _Reporter) -> dict[str, Any]:
    described: dict[str, Any] = {"status": Status.ERROR.value, "error_type": type(error).__name__}
    try:
        described["error_message"] = _exact(str(error))[:2000]
    except BaseException:  # noqa: BLE001 - a hostile __str__ must not lose the result
        described["error_message"] = "<unprintable>"
    if isinstance(error, OutputLimitExceeded):
        described["status"] = Status.OUTPUT_LIMIT.value
    elif isinstance(error, MemoryError):
        described["status"] = Status.MEMORY_LIMIT.value
        reporter.event(EventKind.MEMORY_LIMIT, "MemoryError under the address-space limit")
    elif isinstance(error, RecursionError):
        reporter.event(EventKind.RECURSION, described["error_message"][:200])
    elif isinstance(error, SystemExit):
        reporter.event(EventKind.EXIT, f"SystemExit({described['error_message'][:100]})")
    elif isinstance(error, SandboxViolation):
        described["status"] = Status.BANNED.value
    return described


def _sandbox_traceback(error: BaseException, code: str, message: str) -> str:
    """The snippet's own frames only, with lines taken from its source: the traceback
    module would read the harness's files through linecache, which the hook refuses."""
    frames: list[tuple[int, str]] = []
    tb = error.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<sandbox>":
            frames.append((tb.tb_lineno, tb.tb_frame.f_code.co_name))
        tb = tb.tb_next
    source = code.splitlines()
    lines = ["Traceback (most recent call last):\n"] if frames else []
    for lineno, name in frames[-8:]:
        lines.append(f'  File "<sandbox>", line {lineno}, in {name}\n')
        if 0 < lineno <= len(source):
            lines.append(f"    {source[lineno - 1].strip()}\n")
    lines.append(f"{type(error).__name__}: {message}\n")
    return "".join(lines)


def _is_literal(value: Any) -> bool:
    """Exact builtin literal types all the way down, so repr() round-trips via literal_eval."""
    stack, budget = [value], _LITERAL_NODE_BUDGET
    while stack:
        budget -= 1
        if budget < 0:
            return False  # too large, or a cycle, which repr() would print as [...]
        item = stack.pop()
        kind = type(item)
        if kind is float and not math.isfinite(item):
            return False
        if kind is complex and not (math.isfinite(item.real) and math.isfinite(item.imag)):
            return False
        if kind in _LITERAL_ATOMS:
            continue
        if kind in (list, tuple, set):
            stack.extend(item)
        elif kind is dict:
            stack.extend(item.keys())
            stack.extend(item.values())
        else:
            return False
    return True


def _same(left: Any, right: Any) -> bool:
    """Python equality, except that bool is not int and floats match to 1e-9 relative."""
    if isinstance(left, bool) or isinstance(right, bool):
        return type(left) is type(right) and left == right
    if isinstance(left, int | float) and isinstance(right, int | float):
        if left == right or (type(left) is int and type(right) is int):
            return left == right
        try:
            return math.isclose(left, right, rel_tol=1e-9, abs_tol=1e-12)
        except OverflowError:  # an int too large for a float differs from any float
            return False
    if type(left) is not type(right):
        return False
    if isinstance(left, list | tuple):
        return len(left) == len(right) and all(map(_same, left, right))
    if isinstance(left, dict):
        return left.keys() == right.keys() and all(_same(left[k], right[k]) for k in left)
    return bool(left == right)


def _run_compare(pairs: list[list[str]]) -> dict[str, Any]:
    """Compare literal pairs; None where either side is not a Python literal."""
    matches: list[bool | None] = []
    for expected, candidate in pairs:
        try:
            matches.append(_same(ast.literal_eval(expected), ast.literal_eval(candidate)))
        except Exception:  # noqa: BLE001 - malformed, too deep or too large: no match possible
            matches.append(None)
    return {"status": Status.OK.value, "matches": matches}
