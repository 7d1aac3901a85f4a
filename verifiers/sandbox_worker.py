"""Sandbox supervisor: one long-lived process per pool slot that forks a confined child per job.

Started by `verifiers.sandbox.SandboxPool` as `python -S -P -B sandbox_worker.py` with a
scrubbed environment (PYTHONHASHSEED=0, so every worker prints sets and dicts of strings
in the same order). It never runs model code itself. At start it enters new network and
mount namespaces (sandbox_linux), pre-imports the modules snippets may use (the sandbox
user may not be able to read the stdlib later, and a warm import is what makes the pool
fast), drops dangerous modules from sys.modules once (children inherit that), freezes
its heap for the garbage collector, and answers "ready" with a report of what isolation it
obtained. Then, per job:

1. make a private working directory owned by the sandbox user;
2. fork; the child confines itself and runs the snippet (sandbox_child);
3. read the child's JSON lines under a byte cap until it exits, SIGKILL it at the wall
   deadline or when the cap is hit;
4. reap it with wait4 for its CPU time and exit status, classify, wipe the directory,
   and send one frame back to the host.

A job costs about 2-3 ms of CPU here -- fork, confinement, the snippet, exit -- where a
fresh interpreter costs tens of milliseconds before running anything. The supervisor
stays single-threaded, which is what makes fork safe (the host, which runs vLLM threads,
never forks: it starts supervisors as new interpreters).
The host talks to it over stdin/stdout frames (sandbox_protocol); EOF on stdin means the
host is gone, and the supervisor exits.
"""

from __future__ import annotations

import importlib
import os
import sys

# -P keeps this directory off sys.path; add it just long enough to import the siblings.
_HERE = os.path.dirname(os.path.realpath(__file__))
sys.path.insert(0, _HERE)
import sandbox_child  # noqa: E402
import sandbox_linux  # noqa: E402
from sandbox_audit import AuditPolicy  # noqa: E402
from sandbox_protocol import (  # noqa: E402
    BLOCKING_KINDS,
    EventKind,
    Status,
    encode_frame,
    read_frame,
    write_all,
)

sys.path.remove(_HERE)

import dataclasses  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import pwd  # noqa: E402
import resource  # noqa: E402
import select  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

# Modules dropped from a child's sys.modules, so that `import` of them raises the audited
# import event (and is refused) instead of returning the supervisor's loaded copy.
_HIDDEN_TOPS = frozenset(
    {"os", "posix", "posixpath", "signal", "_signal", "ctypes", "_ctypes", "gc", "_thread",
     "threading", "resource", "select", "selectors", "pwd", "grp", "marshal", "shutil",
     "subprocess", "_posixsubprocess", "socket", "_socket", "importlib", "inspect", "pickle",
     "_pickle", "multiprocessing", "fcntl", "mmap", "pty", "termios", "platform", "sysconfig",
     "site", "__main__", "sandbox_worker", "sandbox_child", "sandbox_linux", "sandbox_audit",
     "sandbox_protocol"}
)  # fmt: skip
_MAX_MESSAGES = 64
# Statuses a child may report about itself; the rest only the supervisor can decide.
_CHILD_STATUSES = frozenset(
    str(s)
    for s in (
        Status.OK,
        Status.ERROR,
        Status.MEMORY_LIMIT,
        Status.OUTPUT_LIMIT,
        Status.FILE_LIMIT,
        Status.BANNED,
    )
)
_EXIT_NO_RESULT = {70: "harness failure", 71: "supervisor died", 72: "privileges not dropped"}


@dataclasses.dataclass
class _Collected:
    data: bytes = b""
    timed_out: bool = False
    overflow: bool = False
    wait_status: int | None = None
    cpu_s: float = 0.0


class Supervisor:
    def __init__(self, config: dict[str, Any]) -> None:
        self.limits: dict[str, Any] = config["limits"]
        self.isolation: dict[str, str] = {}
        stdlib = os.path.realpath(os.path.dirname(os.__file__))
        run_as = self._sandbox_user()
        self.isolation.update(
            sandbox_linux.enter_namespaces(
                network=bool(self.limits["isolate_network"]),
                private_tmp=bool(self.limits["private_tmp"]),
                mask=tuple(self.limits["mask_paths"]),
                keep=(stdlib, _HERE, os.path.realpath(sys.executable)),
                tmp_mb=int(self.limits["tmp_mb"]),
            )
        )
        self.base = self._make_base_dir()
        self._preload()
        program = sandbox_linux.seccomp_deny_filter() if self.limits["seccomp"] else None
        self.isolation["seccomp"] = "deny filter" if program else "off"
        if self.limits["seccomp"] and program is None:
            self.isolation["seccomp"] = f"not enforced: no filter for {os.uname().machine}"
        self.isolation["audit_hook"] = "on" if self.limits["audit_hook"] else "off"
        _hide_modules()
        policy = AuditPolicy(
            read_roots=(stdlib,),
            allowed_modules=frozenset(self.limits["allowed_modules"]),
            protected_pids=frozenset({os.getpid(), int(config["host_pid"])}),
            max_files_written=int(self.limits["max_files_written"]),
        )
        self.context = sandbox_child.prepare(
            self.limits,
            run_as,
            sandbox_linux.SeccompFilter(program) if program else None,
            policy if self.limits["audit_hook"] else None,
        )
        self._jobs = 0
        _confine_inherited(self.limits, run_as)
        # Frozen objects are skipped by the collector, so a collection in a child does not
        # touch (and copy-on-write) every page of the supervisor's heap.
        gc.freeze()

    def _sandbox_user(self) -> tuple[int, int] | None:
        if not self.limits["drop_privileges"]:
            self.isolation["user"] = "unchanged (drop_privileges is off)"
            return None
        if os.geteuid() != 0:
            self.isolation["user"] = f"unchanged: not root (uid {os.geteuid()})"
            return None
        entry = pwd.getpwnam(self.limits["sandbox_user"])
        self.isolation["user"] = f"{entry.pw_name} (uid {entry.pw_uid}, gid {entry.pw_gid})"
        return entry.pw_uid, entry.pw_gid

    @staticmethod
    def _make_base_dir() -> str:
        base = f"/tmp/selfplay-sandbox-{os.getpid()}-{os.urandom(4).hex()}"
        os.mkdir(base)
        os.chmod(base, 0o711)  # traversable by the sandbox user, not listable
        return os.path.realpath(base)  # the audit hook compares real paths

    def _preload(self) -> None:
        failed = []
        for name in self.limits["allowed_modules"]:
            try:
                importlib.import_module(name)
            except ImportError:
                failed.append(name)
        if failed:
            self.isolation["not_preloaded"] = ", ".join(sorted(failed))

    def close(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)

    def run(self, job: dict[str, Any]) -> dict[str, Any]:
        self._jobs += 1
        workdir = f"{self.base}/job-{self._jobs}"
        os.mkdir(workdir, 0o700)
        if self.context.run_as is not None:
            os.chown(workdir, *self.context.run_as)
        read_fd, write_fd = os.pipe()
        start = time.monotonic()
        try:
            pid = os.fork()
        except OSError as error:
            os.close(read_fd)
            os.close(write_fd)
            _wipe(workdir)
            return _crashed(f"fork failed: {error}", 0.0)
        if pid == 0:
            os.close(read_fd)
            sandbox_child.child_main(job, self.context, write_fd, workdir)
        os.close(write_fd)
        try:
            collected = self._collect(pid, read_fd, start + float(self.limits["wall_s"]))
        finally:
            os.close(read_fd)
            _wipe(workdir)
        return self._classify(collected, time.monotonic() - start)

    def _collect(self, pid: int, fd: int, deadline: float) -> _Collected:
        collected = _Collected()
        chunks: list[bytes] = []
        size, eof = 0, False
        max_bytes = int(self.limits["max_output_chars"]) * 18 + (1 << 20)
        pidfd = os.pidfd_open(pid)
        os.set_blocking(fd, False)
        try:
            while not (eof and collected.wait_status is not None):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    collected.timed_out = True
                    break
                watch = ([] if eof else [fd]) + (
                    [] if collected.wait_status is not None else [pidfd]
                )
                ready, _, _ = select.select(watch, [], [], remaining)
                if fd in ready:
                    data = _read_some(fd)
                    if data == b"":
                        eof = True
                    elif data:
                        size += len(data)
                        if size > max_bytes:
                            collected.overflow = True
                            break
                        chunks.append(data)
                if pidfd in ready:
                    self._reap(pid, collected)
            if collected.wait_status is None:
                os.kill(pid, signal.SIGKILL)
                self._reap(pid, collected)
        finally:
            os.close(pidfd)
        collected.data = b"".join(chunks)
        return collected

    @staticmethod
    def _reap(pid: int, collected: _Collected) -> None:
        _, status, usage = os.wait4(pid, 0)
        collected.wait_status = status
        collected.cpu_s = usage.ru_utime + usage.ru_stime

    def _classify(self, collected: _Collected, wall_s: float) -> dict[str, Any]:
        result, events = _parse_messages(collected.data)
        verdict, kind, detail = self._verdict(collected, result)
        if verdict in (Status.OK, Status.ERROR) and any(k in BLOCKING_KINDS for k, _ in events):
            # The events were streamed before the snippet could tamper with its own report.
            verdict = Status.BANNED
        if kind is not None:
            events.append([str(kind), detail])
        final = dict(result or {})
        final.update(status=str(verdict), wall_s=wall_s, cpu_s=collected.cpu_s, events=events)
        if verdict is not Status.OK and "error_message" not in final and detail:
            final["error_message"] = detail
        return final

    def _verdict(
        self, collected: _Collected, result: dict[str, Any] | None
    ) -> tuple[Status, EventKind | None, str]:
        """What the supervisor saw decides first; the child's own word comes last."""
        status = collected.wait_status or 0
        number = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
        cpu_limit = float(self.limits["cpu_s"])
        if collected.overflow:
            return Status.OUTPUT_LIMIT, EventKind.OUTPUT_LIMIT, "result channel over its cap"
        if collected.timed_out:
            return Status.TIMEOUT, EventKind.TIMEOUT, f"wall clock over {self.limits['wall_s']} s"
        # SIGXCPU at the soft RLIMIT_CPU, SIGKILL at the hard one a second later (we sent no
        # SIGKILL: that is the timed_out case). rusage samples CPU time coarsely and can
        # read well under the kernel's own count, hence the half.
        hard_cpu_kill = number == signal.SIGKILL and collected.cpu_s >= cpu_limit / 2
        if number == signal.SIGXCPU or hard_cpu_kill:
            return Status.TIMEOUT, EventKind.TIMEOUT, f"CPU time over {cpu_limit} s"
        if number == signal.SIGXFSZ:
            return Status.FILE_LIMIT, EventKind.FILE_LIMIT, "file over the size limit"
        if number is not None:
            return Status.CRASHED, EventKind.CRASH, f"killed by {signal.Signals(number).name}"
        if result is None:
            code = os.WEXITSTATUS(status)
            reason = _EXIT_NO_RESULT.get(code, "the snippet ended the process")
            return Status.CRASHED, EventKind.EXIT, f"exit code {code} without a result ({reason})"
        if result.get("status") in _CHILD_STATUSES:
            return Status(result["status"]), None, ""
        return Status.CRASHED, EventKind.TAMPER, "unknown status in the result"


def _confine_inherited(limits: dict[str, Any], run_as: tuple[int, int] | None) -> None:
    """Confinement every child would apply identically, applied once here and inherited.

    Each thing a forked child does costs it copy-on-write page faults, so the child keeps
    only what must differ per job or would hamper the supervisor itself: the workdir, the
    CPU limit (it would count the supervisor's whole life), RLIMIT_NPROC (it would stop
    a non-root supervisor from forking), RLIMIT_NOFILE (the supervisor holds pipes to the
    host and to each child), seccomp, setuid and the parent-death signal.
    """
    # stderr stays usable for the supervisor's own errors, on a descriptor children close.
    sys.stderr = os.fdopen(os.dup(2), "w", buffering=1)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 2)
    os.close(null)
    os.environ.clear()
    os.environ["LANG"] = "C.UTF-8"
    memory = int(limits["memory_mb"]) * 1024 * 1024
    file_size = int(limits["file_size_mb"]) * 1024 * 1024
    for which, value in (
        (resource.RLIMIT_AS, memory),
        (resource.RLIMIT_FSIZE, file_size),
        (resource.RLIMIT_CORE, 0),
        (resource.RLIMIT_MEMLOCK, 0),
        (resource.RLIMIT_MSGQUEUE, 0),
    ):
        resource.setrlimit(which, (value, value))
    # CPython ignores SIGXFSZ; the default makes RLIMIT_FSIZE kill, which is classified.
    signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
    if run_as is not None:
        # The supervisor keeps uid 0 (it must chown and kill); the group goes now.
        os.setgroups([])
        os.setgid(run_as[1])


def _hide_modules() -> None:
    """Drop dangerous modules from sys.modules once, here; every child inherits the result.

    The supervisor keeps working: its code holds the module objects in its own globals and
    imports nothing after start-up.
    """
    for name in [n for n in sys.modules if n.partition(".")[0] in _HIDDEN_TOPS]:
        del sys.modules[name]


def _read_some(fd: int) -> bytes | None:
    try:
        return os.read(fd, 1 << 16)
    except BlockingIOError:
        return None


def _parse_messages(data: bytes) -> tuple[dict[str, Any] | None, list[list[str]]]:
    """The child's JSON lines, untrusted: keep known shapes, note anything else as tampering."""
    result: dict[str, Any] | None = None
    events: list[list[str]] = []
    for line in data.split(b"\n")[: _MAX_MESSAGES * 4]:
        if not line.strip():
            continue
        try:
            message = json.loads(line)
        except ValueError:
            message = None
        if not isinstance(message, dict):
            events.append([str(EventKind.TAMPER), "unreadable bytes on the result channel"])
        elif message.get("t") == "event" and len(events) < _MAX_MESSAGES:
            events.append([str(message.get("kind")), str(message.get("detail"))[:300]])
        elif message.get("t") == "result":
            # The harness writes last, after the snippet has finished: a snippet that forged
            # a result line earlier is superseded, and the duplicate is recorded.
            if result is not None:
                events.append([str(EventKind.TAMPER), "more than one result on the result channel"])
            result = message
    return result, _dedupe(events)


def _dedupe(events: list[list[str]]) -> list[list[str]]:
    seen: set[tuple[str, str]] = set()
    unique = []
    for kind, detail in events:
        if (kind, detail) not in seen:
            seen.add((kind, detail))
            unique.append([kind, detail])
    return unique[:_MAX_MESSAGES]


def _crashed(detail: str, wall_s: float) -> dict[str, Any]:
    return {
        "status": str(Status.CRASHED),
        "error_message": detail,
        "wall_s": wall_s,
        "cpu_s": 0.0,
        "events": [[str(EventKind.CRASH), detail]],
    }


def _wipe(path: str) -> None:
    try:
        os.rmdir(path)  # the common case: the snippet wrote nothing
        return
    except OSError:
        pass

    def make_writable(function: Any, failed: str, _excinfo: Any) -> None:
        # Not root (a laptop): the snippet may have removed its own permissions on a subdir.
        os.chmod(os.path.dirname(failed), 0o700)
        os.chmod(failed, 0o700)
        function(failed)

    shutil.rmtree(path, onerror=make_writable)


def main() -> None:
    # Private copies of the protocol pipes; 0 and 1 become /dev/null so that nothing
    # printed by accident can corrupt a frame.
    proto_in, proto_out = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the host decides when we stop
    config = read_frame(proto_in)
    if config is None:
        return
    supervisor = Supervisor(config)
    try:
        ready = {"t": "ready", "pid": os.getpid(), "isolation": supervisor.isolation}
        write_all(proto_out, encode_frame(ready))
        while (job := read_frame(proto_in)) is not None:
            try:
                reply = supervisor.run(job)
            except Exception as error:  # noqa: BLE001 - one bad job must not take the slot down
                reply = _crashed(f"supervisor error: {type(error).__name__}: {error}", 0.0)
            write_all(proto_out, encode_frame(reply))
    finally:
        supervisor.close()


if __name__ == "__main__":
    main()
