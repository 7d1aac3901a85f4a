"""A warm pool of sandboxed Python workers: the executor that is ground truth in self-play.

Usage::

    with SandboxPool(workers=2) as pool:
        result = pool.run("def f(x):\\n    return x * 2", entry="f", args="21")
        assert result.status is Status.OK and result.value_repr == "42"
        results = pool.run_many([SandboxJob(code, entry="f", args=a) for a in inputs])

Each pool slot is a supervisor process (`sandbox_worker.py`, a fresh interpreter started
once) that forks a new, confined child per job, so a job never sees another job's state
and a crashed, hung or killed child costs one fork, not an interpreter start. A
supervisor that dies is replaced and the job it held reports `crashed`.

What every execution gets (layers, outermost first):

- static checks in the host (banned modules, calls, attributes; `static_checks`), unless
  switched off;
- wall-clock timeout (supervisor SIGKILL) and CPU timeout (RLIMIT_CPU);
- RLIMIT_AS (memory), RLIMIT_FSIZE (file size) plus a cap on files created, RLIMIT_NOFILE,
  RLIMIT_NPROC=0 (no processes or threads), RLIMIT_CORE=0;
- caps on stdout, stderr and the value's repr; a byte cap on the result channel;
- a private working directory, wiped after the job; an empty environment;
- as root: setgroups([]) + setgid/setuid to `nobody`; a new network namespace (no
  network at all); a new mount namespace with private, size-capped /tmp, /var/tmp and
  /dev/shm, and /etc, /root, /home hidden unless they hold the Python runtime;
- a seccomp filter (with no_new_privs when not root) refusing process creation, exec,
  kill, sockets, ptrace, mounts, namespaces, io_uring, bpf (x86-64 only);
- a PEP 578 audit hook refusing network, subprocesses, files outside the workdir (reads
  too, except the stdlib), imports outside an allowlist, ctypes, signals to other
  processes, environment reads, tracing and gc introspection; the harness also records a
  snippet that rebinds builtins or sys.modules. Each refusal is a typed `SandboxEvent`
  (kind, detail), returned with the result for the `sandbox_events` table; so are limit
  hits, crashes and exits.

What it does not cover:

- Not root (a laptop): no user switch, so the snippet has the user's file permissions,
  held back only by the audit hook and seccomp; RLIMIT_NPROC counts all the user's
  processes (0 allowed, so fork still fails); namespaces only where unprivileged user
  namespaces are enabled. `SandboxPool.isolation` says what each slot obtained.
- CPU share and total memory across jobs: each job may use a whole core up to its CPU
  limit; cgroups would bound the sum and are left to the machine's operator.
- Without the audit hook, the sandbox user can still read world-readable files that are
  not masked (/usr, /work); the hook refuses them.
- Output written straight to file descriptor 1 or 2 (`os.write`) goes to /dev/null, not
  to `stdout`; only `sys.stdout`/`sys.stderr` are captured.
- Python-level tampering inside a snippet's own process (rebinding builtins, walking
  frames into the harness, writing a fake result line on its channel, rewriting the
  hook's closure cells, which needs the statically banned `__closure__`) can only change
  that job's own report, no more than returning another value would; the harness's last
  result line supersedes earlier forgeries, duplicates are recorded as `tamper`, and the
  OS layers do not depend on the hook. Comparisons run in separate children that execute
  no model code.

Results cross process boundaries as JSON text only: `value_repr` is `repr()` computed in
the child, and comparisons of values (`compare`) run in a sandbox child too, on
`ast.literal_eval` of those strings. Nothing model-controlled is unpickled or evaluated
in the host.
"""

from __future__ import annotations

import ast
import contextlib
import os
import select
import subprocess
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from verifiers.sandbox_protocol import (
    EventKind,
    FrameBuffer,
    Status,
    clean_text,
    encode_frame,
    event_kind,
    write_all,
)
from verifiers.static_checks import StaticPolicy, check_tree, parse

__all__ = [
    "DEFAULT_ALLOWED_MODULES",
    "EventKind",
    "ExecutionResult",
    "SandboxEvent",
    "SandboxJob",
    "SandboxLimits",
    "SandboxPool",
    "SandboxUnavailable",
    "Status",
]

_WORKER_SCRIPT = os.path.join(os.path.dirname(os.path.realpath(__file__)), "sandbox_worker.py")
_COMPARE_CHUNK = 256
# Jobs queued at one supervisor, so it starts the next without waiting for the host; a
# queued job's frame must fit in the pipe buffer so that sending it never blocks.
_PIPELINE_DEPTH = 2
_PIPELINE_MAX_BYTES = 16_384

# Modules a snippet may import at run time, all pre-imported by each supervisor.
DEFAULT_ALLOWED_MODULES = (
    "__future__", "abc", "array", "bisect", "calendar", "cmath", "collections", "copy",
    "copyreg", "dataclasses", "datetime", "decimal", "difflib", "enum", "fractions",
    "functools", "graphlib", "heapq", "itertools", "json", "keyword", "math", "numbers",
    "operator", "pprint", "random", "re", "reprlib", "statistics", "string", "struct",
    "textwrap", "time", "typing", "unicodedata", "encodings", "sys", "builtins",
)  # fmt: skip


class SandboxUnavailable(RuntimeError):
    """No supervisor could be started (the message says why and what to change)."""


@dataclass(frozen=True)
class SandboxEvent:
    """One refused or notable action of a snippet; stored as a `sandbox_events` row."""

    kind: str  # an EventKind value
    detail: str


@dataclass(frozen=True)
class ExecutionResult:
    status: Status
    value_repr: str | None = None  # repr() of the value, computed in the sandbox
    value_type: str | None = None
    value_str: str | None = None  # str() of the value, first 1,000 characters
    literal: bool = False  # the value is built from Python literals, so repr round-trips
    error_type: str | None = None
    error_message: str | None = None
    stdout: str = ""
    stderr: str = ""
    wall_s: float = 0.0
    cpu_s: float = 0.0
    events: tuple[SandboxEvent, ...] = ()
    matches: tuple[bool | None, ...] = ()  # compare jobs only: one per pair

    @property
    def ok(self) -> bool:
        return self.status is Status.OK

    def event_kinds(self) -> set[str]:
        return {event.kind for event in self.events}


@dataclass(frozen=True)
class SandboxJob:
    """Run `code`; then call `entry(*args)` if `entry` is set, `args` being Python literals
    ("1, [2, 3]"). Without `entry`, a trailing expression statement is the value. A job
    with `pairs` instead compares literal strings pairwise (`SandboxPool.compare`)."""

    code: str = ""
    entry: str | None = None
    args: str | None = None
    pairs: tuple[tuple[str, str], ...] | None = None


@dataclass(frozen=True)
class SandboxLimits:
    """Limits and isolation switches of one pool; every field is per execution."""

    # --- time ---
    wall_s: float = field(default=5.0, metadata={"help": "Wall-clock seconds per execution."})
    cpu_s: float = field(default=4.0, metadata={"help": "CPU seconds (RLIMIT_CPU, whole s)."})
    # --- memory, files, output ---
    memory_mb: int = field(default=256, metadata={"help": "Address space (RLIMIT_AS), MB."})
    file_size_mb: int = field(default=4, metadata={"help": "Largest file (RLIMIT_FSIZE), MB."})
    max_files_written: int = field(default=32, metadata={"help": "Files/dirs created per job."})
    max_open_files: int = field(default=32, metadata={"help": "RLIMIT_NOFILE."})
    max_output_chars: int = field(
        default=65_536, metadata={"help": "Cap on stdout, stderr and the value's repr, each."}
    )
    max_code_chars: int = field(default=100_000, metadata={"help": "Longest accepted source."})
    tmp_mb: int = field(default=256, metadata={"help": "Size of the private /tmp tmpfs."})
    # --- isolation (switch off only to test one layer alone) ---
    drop_privileges: bool = field(default=True, metadata={"help": "setuid when root."})
    sandbox_user: str = field(default="nobody", metadata={"help": "User to run jobs as."})
    isolate_network: bool = field(default=True, metadata={"help": "New network namespace."})
    private_tmp: bool = field(default=True, metadata={"help": "Private tmpfs /tmp etc."})
    mask_paths: tuple[str, ...] = field(
        default=("/etc", "/root", "/home"), metadata={"help": "Hidden under empty tmpfs."}
    )
    seccomp: bool = field(default=True, metadata={"help": "Seccomp deny filter."})
    audit_hook: bool = field(default=True, metadata={"help": "PEP 578 audit hook."})
    # --- what code may use ---
    static_checks: bool = field(default=True, metadata={"help": "AST checks in the host."})
    static_policy: StaticPolicy = field(default_factory=StaticPolicy)
    allowed_modules: tuple[str, ...] = field(
        default=DEFAULT_ALLOWED_MODULES, metadata={"help": "Importable at run time."}
    )
    worker_start_s: float = field(default=30.0, metadata={"help": "Supervisor start timeout."})
    host_grace_s: float = field(
        default=5.0, metadata={"help": "Beyond wall_s, before a silent supervisor is replaced."}
    )

    def __post_init__(self) -> None:
        positive = ("wall_s", "cpu_s", "memory_mb", "file_size_mb", "max_files_written",
                    "max_output_chars", "max_code_chars", "tmp_mb", "worker_start_s",
                    "host_grace_s")  # fmt: skip
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"SandboxLimits.{name} ({getattr(self, name)}) must be > 0")
        if self.memory_mb < 64:
            raise ValueError(
                f"SandboxLimits.memory_mb ({self.memory_mb}) must be >= 64: the pre-imported "
                "interpreter alone maps about 40 MB; raise it"
            )
        if self.max_open_files < 8:
            raise ValueError(
                f"SandboxLimits.max_open_files ({self.max_open_files}) must be >= 8 "
                "(stdio, the result pipe and a few files)"
            )

    def worker_config(self) -> dict[str, Any]:
        """The JSON-able part a supervisor needs (static checks stay in the host)."""
        config = asdict(self)
        del config["static_policy"]
        return config


class _Worker:
    """One supervisor process and the host's end of its pipes."""

    def __init__(self, limits: SandboxLimits) -> None:
        env = {
            "PYTHONHASHSEED": "0",
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "PATH": "/usr/bin:/bin",
        }
        self.process = subprocess.Popen(
            [sys.executable, "-S", "-P", "-B", _WORKER_SCRIPT],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            cwd="/",
            close_fds=True,
            start_new_session=True,  # a Ctrl-C in the host's terminal is the host's to handle
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self.write_fd = self.process.stdin.fileno()
        self.read_fd = self.process.stdout.fileno()
        os.set_blocking(self.read_fd, False)
        self.frames = FrameBuffer()
        self.pending: deque[dict[str, Any]] = deque()
        self.eof = False
        config = {"limits": limits.worker_config(), "host_pid": os.getpid()}
        self.send(config)
        ready = self.wait_frame(time.monotonic() + limits.worker_start_s)
        if ready is None or ready.get("t") != "ready":
            self.kill()
            raise SandboxUnavailable(
                f"sandbox supervisor did not start (got {ready!r}); run "
                f"`{sys.executable} -S -P -B {_WORKER_SCRIPT}` by hand to see its error"
            )
        self.pid = int(ready["pid"])
        self.isolation: dict[str, str] = {str(k): str(v) for k, v in ready["isolation"].items()}

    def send(self, message: dict[str, Any]) -> None:
        write_all(self.write_fd, encode_frame(message))

    def pump(self) -> None:
        """Read whatever is available into `pending`; sets `eof` when the supervisor is gone."""
        while True:
            try:
                data = os.read(self.read_fd, 1 << 20)
            except BlockingIOError:
                return
            if not data:
                self.eof = True
                return
            self.pending.extend(self.frames.feed(data))

    def wait_frame(self, deadline: float) -> dict[str, Any] | None:
        while not self.pending and not self.eof:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            select.select([self.read_fd], [], [], remaining)
            self.pump()
        return self.pending.popleft() if self.pending else None

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()

    def stop(self) -> None:
        """Close stdin (the supervisor exits on EOF and wipes its directory), then reap."""
        try:
            if self.process.stdin is not None:
                self.process.stdin.close()
            self.process.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.kill()


class SandboxPool:
    """`workers` warm sandbox slots; `run_many` keeps all of them busy. Thread-safe (one
    batch at a time). Close it, or use it as a context manager."""

    def __init__(self, workers: int = 2, limits: SandboxLimits | None = None) -> None:
        if workers < 1:
            raise ValueError(f"workers ({workers}) must be >= 1")
        self.limits = limits or SandboxLimits()
        self._lock = threading.Lock()
        self._workers: list[_Worker] = []
        # Stops the supervisors even if the caller forgets close() (they would also exit
        # on their own at the host's exit, when their stdin closes).
        self._finalizer = weakref.finalize(self, _stop_all, self._workers)
        try:
            self._workers.extend(_Worker(self.limits) for _ in range(workers))
        except BaseException:
            self._finalizer()
            raise
        self.restarts = 0

    def __enter__(self) -> SandboxPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._finalizer()

    @property
    def isolation(self) -> dict[str, str]:
        """What the first slot obtained: user, namespaces, masks, seccomp, audit hook."""
        return dict(self._workers[0].isolation) if self._workers else {}

    @property
    def worker_pids(self) -> tuple[int, ...]:
        return tuple(worker.pid for worker in self._workers)

    def run(self, code: str, entry: str | None = None, args: str | None = None) -> ExecutionResult:
        return self.run_many([SandboxJob(code=code, entry=entry, args=args)])[0]

    def compare(self, pairs: Sequence[tuple[str, str]]) -> list[bool | None]:
        """Compare literal strings pairwise in the sandbox: True/False, None if unparseable.

        Equality is Python's, except that bool is not int and floats match to 1e-9. A side
        longer than `max_code_chars` is not sent at all (None).
        """
        cap = self.limits.max_code_chars
        sendable = [i for i, (a, b) in enumerate(pairs) if len(a) <= cap and len(b) <= cap]
        chunks = [
            tuple(pairs[i] for i in sendable[start : start + _COMPARE_CHUNK])
            for start in range(0, len(sendable), _COMPARE_CHUNK)
        ]
        results = self.run_many([SandboxJob(pairs=chunk) for chunk in chunks])
        found: list[bool | None] = []
        for chunk, result in zip(chunks, results, strict=True):
            ok = result.ok and len(result.matches) == len(chunk)
            found.extend(result.matches if ok else [None] * len(chunk))
        matches: list[bool | None] = [None] * len(pairs)
        for index, match in zip(sendable, found, strict=True):
            matches[index] = match
        return matches

    def run_many(self, jobs: Sequence[SandboxJob]) -> list[ExecutionResult]:
        """Results in the order of `jobs`; never raises for anything a job does."""
        results: list[ExecutionResult | None] = []
        frames: dict[int, bytes] = {}
        for index, job in enumerate(jobs):
            refused, message = self._prepare(job)
            results.append(refused)
            if refused is None:
                frames[index] = encode_frame(message)
        with self._lock:
            if not self._workers:
                raise SandboxUnavailable("the pool is closed; create a new SandboxPool")
            self._dispatch(frames, deque(frames), results)
        return [result for result in results if result is not None]

    def _prepare(self, job: SandboxJob) -> tuple[ExecutionResult | None, dict[str, Any]]:
        """The message for a worker, or the result of refusing the job in the host: oversized
        or statically banned code needs no sandbox."""
        if job.pairs is not None:
            return None, {"kind": "compare", "pairs": [list(pair) for pair in job.pairs]}
        size = len(job.code) + len(job.args or "")
        if size > self.limits.max_code_chars:
            detail = (
                f"source and arguments of {size} chars over the {self.limits.max_code_chars} cap"
            )
            return ExecutionResult(Status.ERROR, error_type="CodeTooLong", error_message=detail), {}
        tree = parse(job.code)
        if self.limits.static_checks:
            refused = _static_refusal(tree, self.limits.static_policy)
            if refused is not None:
                return refused, {}
        tail = _tail_line(tree, job.code) if job.entry is None else None
        return None, {
            "kind": "exec",
            "code": job.code,
            "entry": job.entry,
            "args": job.args,
            "tail": tail,
        }

    def _dispatch(
        self, frames: dict[int, bytes], queue: deque[int], results: list[ExecutionResult | None]
    ) -> None:
        flights: dict[int, deque[int]] = {slot: deque() for slot in range(len(self._workers))}
        deadlines: dict[int, float] = {}  # slot -> when the job at the head of its flight is late
        while queue or any(flights.values()):
            for slot, flight in flights.items():
                self._fill(slot, flight, frames, queue, results, deadlines)
            active = [slot for slot, flight in flights.items() if flight]
            if not active:
                continue
            timeout = max(0.0, min(deadlines[slot] for slot in active) - time.monotonic())
            fds = {self._workers[slot].read_fd: slot for slot in active}
            ready, _, _ = select.select(list(fds), [], [], timeout)
            for fd in ready:
                self._workers[fds[fd]].pump()
            for slot in active:
                self._settle(slot, flights[slot], deadlines, queue, results)

    def _fill(
        self,
        slot: int,
        flight: deque[int],
        frames: dict[int, bytes],
        queue: deque[int],
        results: list[ExecutionResult | None],
        deadlines: dict[int, float],
    ) -> None:
        """Keep up to two jobs queued at a supervisor, so it never waits for the host."""
        while queue and len(flight) < _PIPELINE_DEPTH:
            index = queue[0]
            frame = frames[index]
            if flight and len(frame) > _PIPELINE_MAX_BYTES:
                return  # it might not fit the pipe: sending it now could block the host
            queue.popleft()
            if flight:
                try:
                    write_all(self._workers[slot].write_fd, frame)
                except OSError:  # the supervisor died mid-job: _settle will see the EOF
                    queue.appendleft(index)
                    return
            elif self._send_idle(slot, frame):
                deadlines[slot] = time.monotonic() + self._patience_s
            else:
                results[index] = _lost("no supervisor could take the job")
                continue
            flight.append(index)

    def _settle(
        self,
        slot: int,
        flight: deque[int],
        deadlines: dict[int, float],
        queue: deque[int],
        results: list[ExecutionResult | None],
    ) -> None:
        worker = self._workers[slot]
        while worker.pending and flight:
            results[flight.popleft()] = _to_result(worker.pending.popleft(), self.limits)
            deadlines[slot] = time.monotonic() + self._patience_s  # the next job starts now
        if not flight:
            return
        if worker.eof:
            detail = "the supervisor process died during the job"
        elif time.monotonic() > deadlines[slot]:
            detail = f"the supervisor gave no answer within {self._patience_s} s"
        else:
            return
        results[flight.popleft()] = _lost(detail)
        queue.extendleft(reversed(flight))  # queued behind it, never started: run elsewhere
        flight.clear()
        self._replace(slot)

    @property
    def _patience_s(self) -> float:
        return self.limits.wall_s + self.limits.host_grace_s

    def _send_idle(self, slot: int, frame: bytes) -> bool:
        # A supervisor that died while idle is found here; the job never ran, so it goes
        # to the replacement instead of failing.
        for _attempt in range(2):
            try:
                write_all(self._workers[slot].write_fd, frame)
                return True
            except OSError:
                self._replace(slot)
        return False

    def _replace(self, slot: int) -> None:
        self._workers[slot].kill()
        self._workers[slot] = _Worker(self.limits)
        self.restarts += 1


def _stop_all(workers: list[_Worker]) -> None:
    for worker in workers:
        worker.stop()
    workers.clear()  # in place: the pool and its finalizer share this list


def _static_refusal(tree: ast.Module | str, policy: StaticPolicy) -> ExecutionResult | None:
    if isinstance(tree, str):
        kind, _, message = tree.partition(": ")
        return ExecutionResult(Status.ERROR, error_type=kind, error_message=message)
    findings = check_tree(tree, policy)
    if not findings:
        return None
    events = tuple(SandboxEvent(str(f.kind), f.describe()) for f in findings)
    message = "; ".join(event.detail for event in events[:5])
    return ExecutionResult(
        Status.BANNED, error_type="StaticCheck", error_message=message, events=events
    )


def _tail_line(tree: ast.Module | str, code: str) -> int | None:
    """Where the trailing expression (the REPL-like value) starts: its line when it starts
    a line of its own, so the worker can compile the two parts straight from the source;
    -1 to have the worker find it in the AST itself; None when there is none."""
    if isinstance(tree, str) or not tree.body or not isinstance(tree.body[-1], ast.Expr):
        return None
    last = tree.body[-1]
    previous_end = (tree.body[-2].end_lineno or 0) if len(tree.body) > 1 else 0
    if last.col_offset != 0 or previous_end >= last.lineno or "\r" in code:
        return -1
    return last.lineno


def _lost(detail: str) -> ExecutionResult:
    return ExecutionResult(
        Status.CRASHED,
        error_type="WorkerLost",
        error_message=detail,
        events=(SandboxEvent(str(EventKind.WORKER_LOST), detail),),
    )


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _to_result(frame: dict[str, Any], limits: SandboxLimits) -> ExecutionResult:
    """Build a result from a supervisor frame, keeping only known keys of the right types."""
    cap = limits.max_output_chars
    try:
        status = Status(str(frame.get("status")))
    except ValueError:
        status = Status.CRASHED
    events: list[SandboxEvent] = []
    for item in frame.get("events") or []:
        if not (isinstance(item, list) and len(item) == 2):
            continue
        kind, detail = event_kind(item[0]), clean_text(str(item[1]), 300) or ""
        if kind is None:
            # Only a snippet writing on its own result channel can invent a kind.
            kind, detail = EventKind.TAMPER, f"forged event {str(item[0])[:50]!r}: {detail}"
        events.append(SandboxEvent(str(kind), detail))
    raw_matches = frame.get("matches") or []
    matches = (
        tuple(m if isinstance(m, bool) else None for m in raw_matches)
        if isinstance(raw_matches, list)
        else ()
    )
    return ExecutionResult(
        status=status,
        value_repr=clean_text(frame.get("value_repr"), cap),
        value_type=clean_text(frame.get("value_type"), 100),
        value_str=clean_text(frame.get("value_str"), 1000),
        literal=frame.get("literal") is True,
        error_type=clean_text(frame.get("error_type"), 100),
        error_message=clean_text(frame.get("error_message"), 2000),
        stdout=clean_text(frame.get("stdout"), cap) or "",
        stderr=clean_text(frame.get("stderr"), cap) or "",
        wall_s=_number(frame.get("wall_s")),
        cpu_s=_number(frame.get("cpu_s")),
        events=tuple(events),
        matches=matches,
    )
