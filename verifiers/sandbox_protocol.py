"""The wire format between the host, a sandbox supervisor and its per-job child.

Shared by `verifiers.sandbox` (host side) and `sandbox_worker` / `sandbox_child` (which
the supervisor imports as top-level modules, because it runs with `-S -P` and no package
context). Standard library only, and no pickle anywhere: the host and the supervisor
exchange length-prefixed JSON frames; the child streams JSON lines to its supervisor.
A child runs model-written code, so everything it sends is parsed as untrusted text with
a size cap, and only known keys of known types are kept.
"""

from __future__ import annotations

import json
import os
import struct
from enum import StrEnum
from typing import Any

# A frame is a 4-byte big-endian length and that many bytes of UTF-8 JSON.
_HEADER = struct.Struct(">I")
MAX_FRAME_BYTES = 64 * 1024 * 1024


class Status(StrEnum):
    """How one execution ended."""

    OK = "ok"
    ERROR = "error"  # the code raised (including SyntaxError and SystemExit)
    TIMEOUT = "timeout"  # wall clock (supervisor SIGKILL) or CPU (RLIMIT_CPU) limit
    MEMORY_LIMIT = "memory_limit"  # RLIMIT_AS: MemoryError
    OUTPUT_LIMIT = "output_limit"  # stdout/stderr/value repr/result channel over its cap
    FILE_LIMIT = "file_limit"  # RLIMIT_FSIZE or too many files written
    BANNED = "banned"  # a static check or the runtime audit hook refused something
    CRASHED = "crashed"  # killed by a signal, exited without a result, or worker lost


class EventKind(StrEnum):
    """What a sandbox event records; stored as `sandbox_events.kind` by the pipeline."""

    BANNED_IMPORT = "banned_import"
    BANNED_CALL = "banned_call"
    BANNED_ATTRIBUTE = "banned_attribute"
    NETWORK = "network"
    SUBPROCESS = "subprocess"
    FILE_ESCAPE = "file_escape"  # write, create, delete or rename outside the workdir
    FILE_READ = "file_read"  # read or list outside the workdir and the stdlib
    ENVIRON = "environ"  # reading the environment (scrubbed anyway: this records the intent)
    CTYPES = "ctypes"
    SIGNAL = "signal"
    KILL_PARENT = "kill_parent"
    EXIT = "exit"
    TAMPER = "tamper"  # audit hooks, tracing, gc/frame introspection, bytecode, forged frames
    PICKLE = "pickle"  # a returned value that defines pickle hooks
    RECURSION = "recursion"
    TIMEOUT = "timeout"
    MEMORY_LIMIT = "memory_limit"
    OUTPUT_LIMIT = "output_limit"
    FILE_LIMIT = "file_limit"
    CRASH = "crash"
    WORKER_LOST = "worker_lost"


# Kinds the audit hook raises on: any of them turns the job's status into BANNED.
BLOCKING_KINDS = frozenset(
    {
        EventKind.BANNED_IMPORT,
        EventKind.NETWORK,
        EventKind.SUBPROCESS,
        EventKind.FILE_ESCAPE,
        EventKind.FILE_READ,
        EventKind.ENVIRON,
        EventKind.CTYPES,
        EventKind.SIGNAL,
        EventKind.KILL_PARENT,
        EventKind.TAMPER,
    }
)


def encode_frame(message: dict[str, Any]) -> bytes:
    body = json.dumps(message, ensure_ascii=True, separators=(",", ":")).encode("ascii")
    return _HEADER.pack(len(body)) + body


def write_all(fd: int, data: bytes) -> None:
    """os.write may write less than asked on a pipe; loop until everything is out."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def read_exact(fd: int, size: int) -> bytes | None:
    """Blocking read of exactly `size` bytes; None at end of file."""
    chunks: list[bytes] = []
    remaining = size
    while remaining:
        chunk = os.read(fd, min(remaining, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_frame(fd: int, max_bytes: int = MAX_FRAME_BYTES) -> dict[str, Any] | None:
    """One frame from a blocking fd; None at end of file; ValueError if malformed."""
    header = read_exact(fd, _HEADER.size)
    if header is None:
        return None
    (size,) = _HEADER.unpack(header)
    if size > max_bytes:
        raise ValueError(f"frame of {size} bytes exceeds the {max_bytes}-byte cap")
    body = read_exact(fd, size)
    if body is None:
        return None
    message = json.loads(body)
    if not isinstance(message, dict):
        raise ValueError(f"frame is a {type(message).__name__}, not an object")
    return message


class FrameBuffer:
    """Incremental frame parser for non-blocking reads (the host reads many workers at once)."""

    def __init__(self, max_bytes: int = MAX_FRAME_BYTES) -> None:
        self._buffer = bytearray()
        self._max_bytes = max_bytes

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        self._buffer += data
        frames: list[dict[str, Any]] = []
        while len(self._buffer) >= _HEADER.size:
            (size,) = _HEADER.unpack_from(self._buffer)
            if size > self._max_bytes:
                raise ValueError(f"frame of {size} bytes exceeds the {self._max_bytes}-byte cap")
            if len(self._buffer) < _HEADER.size + size:
                break
            body = bytes(self._buffer[_HEADER.size : _HEADER.size + size])
            del self._buffer[: _HEADER.size + size]
            message = json.loads(body)
            if not isinstance(message, dict):
                raise ValueError(f"frame is a {type(message).__name__}, not an object")
            frames.append(message)
        return frames


def clean_text(value: Any, cap: int) -> str | None:
    """A str from untrusted data, capped and safe to store (no lone surrogates)."""
    if value is None:
        return None
    if not isinstance(value, str):
        return None
    text = value[:cap]
    # Lone surrogates survive JSON but break UTF-8 writers (Arrow, DuckDB) downstream.
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def event_kind(value: Any) -> EventKind | None:
    try:
        return EventKind(value)
    except ValueError:
        return None
