"""The runtime audit hook installed in every sandbox child just before the snippet runs.

PEP 578 audit hooks see the C-level events behind dangerous operations (`socket.*`,
`os.system`, `os.fork`, `open`, `import`, `ctypes.*`, `os.kill`, ...) however the code
reached them: through `__import__`, `importlib`, `eval`, `getattr` chains or
`object.__subclasses__()`. A hook cannot be removed from Python code, so it is a sound
second layer behind the static checks. Each blocked attempt is reported as a sandbox
event through `report` before the hook raises PermissionError in the snippet.

Hardening against a snippet that turns on the hook itself: all of its state and every
function it calls (even builtins such as `isinstance`) are closure variables bound at
install time, so rebinding module globals or builtins cannot change its decisions; frames
are unreachable while the snippet runs (`sys._getframe` raises ValueError, which
namedtuple, enum, typing and warnings already handle; `tb_frame`, `gi_frame`, `cr_frame`
and `ag_frame` are refused), so its closure cells cannot be reached through them; gc
introspection, tracing, new audit hooks and replacing a function's code or defaults are
refused. The harness disarms the frame rule only after the snippet has finished.

What it does not cover, and what covers it instead: operations with no audit event
(`os.mkfifo`, `os.write` on an inherited fd, `posix._exit`) are refused by seccomp or
harmless in the private namespaces. The OS layer underneath -- dropped privileges,
rlimits, seccomp, network and mount namespaces -- does not depend on this hook.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sandbox_protocol import EventKind

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC

_PROCESS_EVENTS = frozenset(
    {"os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty",
     "subprocess.Popen", "pty.spawn", "os.startfile"}
)  # fmt: skip
_TAMPER_EVENTS = frozenset(
    {"sys.addaudithook", "sys.settrace", "sys.setprofile", "sys._current_frames",
     "gc.get_objects", "gc.get_referrers", "gc.get_referents", "code.__new__",
     "function.__new__", "resource.setrlimit", "resource.prlimit", "sys.unraisablehook"}
)  # fmt: skip
_FRAME_ATTRIBUTES = frozenset({"tb_frame", "gi_frame", "cr_frame", "ag_frame"})
_FUNCTION_INTERNALS = frozenset({"__code__", "__defaults__", "__kwdefaults__", "__closure__"})
# A custom event: the harness's os.environ stand-in raises it on every read.
ENVIRON_EVENT = "sandbox.environ"
_NETWORK_PREFIXES = ("socket.", "http.client.", "urllib.", "ftplib.", "smtplib.", "poplib.",
                     "imaplib.", "nntplib.", "telnetlib.", "webbrowser.")  # fmt: skip
# Path events: (index of the path argument(s), True when the event writes).
_PATH_EVENTS: dict[str, tuple[tuple[int, ...], bool]] = {
    "os.listdir": ((0,), False),
    "os.scandir": ((0,), False),
    "os.mkdir": ((0,), True),
    "os.rmdir": ((0,), True),
    "os.remove": ((0,), True),
    "os.rename": ((0, 1), True),
    "os.link": ((0, 1), True),
    "os.symlink": ((1,), True),
    "os.truncate": ((0,), True),
    "os.chmod": ((0,), True),
    "os.chown": ((0,), True),
    "os.utime": ((0,), True),
    "os.chflags": ((0,), True),
    "os.setxattr": ((0,), True),
    "os.removexattr": ((0,), True),
    "os.chdir": ((0,), False),
}
_CREATING_EVENTS = frozenset({"os.mkdir", "os.link", "os.symlink"})
# Which event a refused import counts as, by its top-level module.
_IMPORT_KINDS: dict[str, EventKind] = {
    **dict.fromkeys(("socket", "_socket", "ssl", "_ssl", "http", "urllib", "ftplib",
                     "smtplib", "poplib", "imaplib", "telnetlib", "webbrowser", "asyncio",
                     "select", "selectors"), EventKind.NETWORK),
    **dict.fromkeys(("subprocess", "_posixsubprocess", "multiprocessing", "_multiprocessing",
                     "pty", "concurrent"), EventKind.SUBPROCESS),
    **dict.fromkeys(("ctypes", "_ctypes"), EventKind.CTYPES),
    **dict.fromkeys(("signal", "_signal"), EventKind.SIGNAL),
}  # fmt: skip


class SandboxViolation(PermissionError):
    """Raised into the snippet when the hook refuses an operation."""


class FrameRefused(ValueError):
    """sys._getframe while a snippet runs: a ValueError, which the stdlib's callers expect."""


@dataclass(frozen=True)
class AuditPolicy:
    read_roots: tuple[str, ...]  # real paths readable besides the workdir (the stdlib)
    allowed_modules: frozenset[str]  # top-level modules a snippet may import afresh
    protected_pids: frozenset[int]  # the supervisor and the host
    max_files_written: int


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root + "/")


@dataclass(frozen=True)
class AuditHook:
    """A hook built once in the supervisor and installed in each child.

    Building it before the fork means a child only fills in its workdir and calls
    `install`: the closures already exist, in pages the child does not have to copy.
    Every child starts from the supervisor's untouched state (armed, no files counted).
    """

    hook: Callable[[str, tuple[Any, ...]], None]
    disarm: Callable[[], None]  # lifts the frame rule once the snippet is done
    workdir: list[str]  # the job's private directory (a real path), set by the child

    def install(self, workdir: str) -> None:
        """Install for the rest of this process's life."""
        self.workdir[0] = workdir
        sys.addaudithook(self.hook)


def build_audit_hook(
    policy: AuditPolicy,
    report: Callable[[EventKind, str], None],
    protected_types: tuple[type, ...] = (),
) -> AuditHook:
    """The hook for `policy`; `report` records each refusal; attributes of
    `protected_types` (the harness's own classes) cannot be replaced."""
    armed, workdir = [True], [""]
    refuse = _refuser(report)
    check_path, count_written = _path_guard(policy, workdir, refuse)
    import_kinds, process_events = dict(_IMPORT_KINDS), _PROCESS_EVENTS
    allowed, protected_pids = policy.allowed_modules, policy.protected_pids
    path_events, creating, tamper = dict(_PATH_EVENTS), _CREATING_EVENTS, _TAMPER_EVENTS
    frames, internals, network = _FRAME_ATTRIBUTES, _FUNCTION_INTERNALS, _NETWORK_PREFIXES
    write_flags, environ_event, kind, frame_refused = (
        _WRITE_FLAGS,
        ENVIRON_EVENT,
        EventKind,
        FrameRefused,
    )
    _str, _len, _isinstance, _any, _bool = str, len, isinstance, any, bool

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event == "open":
            raw, mode, flags = args
            writes = _bool(flags & write_flags) or _any(c in (mode or "") for c in "wax+")
            check_path("open", raw, writes)
            if writes and not _isinstance(raw, int):
                count_written("open")
        elif event == "import":
            top = _str(args[0]).partition(".")[0]
            if top not in allowed:
                refuse(import_kinds.get(top, kind.BANNED_IMPORT), f"import {args[0]}")
        elif event in path_events:
            indexes, writes = path_events[event]
            for index in indexes:
                check_path(event, args[index] if index < _len(args) else None, writes)
            if event in creating:
                count_written(event)
        elif event in process_events:
            refuse(kind.SUBPROCESS, f"{event} {_str(args)[:200]}")
        elif event in ("os.kill", "os.killpg", "signal.pthread_kill"):
            pid = args[0] if args and _isinstance(args[0], int) else 0
            if event == "os.killpg" or pid <= 0 or pid in protected_pids:
                refuse(kind.KILL_PARENT, f"{event}{args}")
            refuse(kind.SIGNAL, f"{event}{args}")
        elif event == environ_event:
            refuse(kind.ENVIRON, f"os.environ {args[0]}")
        elif event in tamper:
            refuse(kind.TAMPER, event)
        elif event == "sys._getframe" and armed[0]:
            raise frame_refused("frames are not available in the sandbox")
        elif event == "object.__getattr__" and armed[0] and args[1] in frames:
            refuse(kind.TAMPER, f"frame access .{args[1]}")
        elif event == "object.__setattr__" and (
            args[1] in internals or (protected_types and args[0] in protected_types)
        ):
            refuse(kind.TAMPER, f"rewriting .{args[1]} of {_str(args[0])[:80]}")
        elif event.startswith("ctypes."):
            refuse(kind.CTYPES, event)
        elif event.startswith(network):
            refuse(kind.NETWORK, f"{event} {_str(args)[:200]}")

    def disarm() -> None:
        armed[0] = False

    return AuditHook(hook, disarm, workdir)


def _refuser(report: Callable[[EventKind, str], None]) -> Callable[[EventKind, str], None]:
    violation = SandboxViolation

    def refuse(kind: EventKind, detail: str) -> None:
        report(kind, detail)
        raise violation(f"sandbox refused: {detail}")

    return refuse


def _path_guard(
    policy: AuditPolicy, workdir: list[str], refuse: Callable[[EventKind, str], None]
) -> tuple[Callable[[str, object, bool], None], Callable[[str], None]]:
    """(check_path, count_written), closures over the job's rules."""
    readable = (*policy.read_roots, "/dev/null", "/dev/urandom")
    max_files, written = policy.max_files_written, [0]
    realpath, getcwd, fspath, inside = os.path.realpath, os.getcwd, os.fspath, _inside
    _isinstance, _any, kind = isinstance, any, EventKind

    def resolve(raw: object) -> str:
        try:
            path = fspath(raw)  # type: ignore[call-overload]
            if _isinstance(path, bytes):
                path = path.decode("utf-8", "surrogateescape")
            return realpath(path if path.startswith("/") else f"{getcwd()}/{path}")
        except Exception:  # noqa: BLE001 - an unresolvable path is refused, not crashed on
            return "<unresolvable>"

    def check_path(event: str, raw: object, writes: bool) -> None:
        if _isinstance(raw, int):
            if event == "open":
                # Reopening an inherited descriptor (the result channel) is not file access.
                refuse(kind.FILE_ESCAPE, f"open of file descriptor {raw}")
            return  # fchmod-style calls on descriptors the snippet opened itself
        path, own = resolve(raw if raw is not None else "."), workdir[0]
        if writes and not inside(path, own):
            refuse(kind.FILE_ESCAPE, f"{event} {path}")
        if not writes and not (inside(path, own) or _any(inside(path, r) for r in readable)):
            refuse(kind.FILE_READ, f"{event} {path}")

    def count_written(event: str) -> None:
        # RLIMIT_FSIZE caps one file; this caps how many, so a loop cannot fill the disk.
        written[0] += 1
        if written[0] > max_files:
            refuse(kind.FILE_LIMIT, f"{event}: more than {max_files} files written")

    return check_path, count_written
