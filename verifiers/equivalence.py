"""Answer equivalence under hard time limits: math-verify in a warm process pool.

`EquivalenceChecker.cluster` groups the m Solver answers of each task into
equivalence clusters (the input of the majority-vote pseudo-labeller, R-Zero /
Agent0); `EquivalenceChecker.equivalent` asks whether two answers agree (e.g. the
majority label and the Challenger's reference answer).

How equality is decided, for kind "math":
1. answers whose `normalize_answer` strings are equal are equal (no sympy);
2. otherwise math-verify: `parse("$" + answer + "$")` (LaTeX + plain-expression
   extraction, so "0.5", "1/2", "\\frac{1}{2}" and "x=2" all parse), then
   `verify(a, b)` and, if that is not True, `verify(b, a)`. Two answers are equal
   if EITHER direction says so: math-verify's `verify(gold, target)` is
   deliberately lenient on the target side (a set target may match a relation
   gold, "1<x<2" ~ "(1,2)"), and between two Solver samples neither is the gold.
   The relation is therefore symmetric; clusters take it transitively by
   comparing each new distinct answer with the first member (representative) of
   each existing cluster, in order of first appearance.
For kind "mcq": exact letter equality (case-insensitive), no math-verify.

Why processes: math-verify's own timeouts use `signal.alarm`, which works only on
a process's main thread, and our stages run on Prefect worker threads. Here each
check runs on the main thread of a worker process (started with "spawn", never
"fork": the host runs vLLM threads), so math-verify's `parsing_timeout` /
`timeout_seconds` work. Signals only fire between Python bytecodes, so the host
adds a hard deadline: each worker stamps a shared heartbeat before every
math-verify call, and the host kills and replaces a worker whose current call
has run longer than `kill_after_s`. The unfinished check is reported as timed
out, the rest of that worker's batch goes to the replacement. Calls never hang
and never raise for a bad answer.

The host process never imports math-verify or sympy.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import threading
import time
import weakref
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any, Final, Literal

from verifiers.answers import normalize_answer

__all__ = ["AnswerKind", "CheckerStats", "ClusterBatch", "EquivalenceChecker"]

logger = logging.getLogger(__name__)

AnswerKind = Literal["math", "mcq"]
_KINDS = ("math", "mcq")

# "spawn": a fresh interpreter; forking a host that runs vLLM threads can deadlock.
_START_METHOD: Final = "spawn"
# How often the host looks at heartbeats while it waits for results.
_POLL_S = 0.05
# A spawned worker imports sympy + math-verify (~1 s here); allow for a loaded box.
_STARTUP_TIMEOUT_S = 120.0
# Worker starts that may fail within one call before its remaining work is given up.
_MAX_START_FAILURES = 3
# Items per message to a worker: one IPC send per chunk, and a killed worker
# hands back at most this much to the queue.
_MAX_CHUNK = 64

# Work items sent to workers: ("cluster", distinct answers) or ("pair", (a, b)).
_Payload = tuple[str, Any]


@dataclass(frozen=True)
class ClusterBatch:
    """Result of `EquivalenceChecker.cluster_batch`, one entry per group."""

    cluster_ids: list[list[int | None]]  # per answer; None where the answer is None
    timeouts: list[int]  # math-verify checks that timed out or were cut off by a kill


@dataclass(frozen=True)
class CheckerStats:
    """Counters since the checker was created."""

    worker_items: int  # groups or pairs that needed math-verify
    timeouts: int  # checks that timed out (in-worker alarm or host kill)
    worker_restarts: int  # workers killed and replaced


@dataclass
class _Worker:
    process: BaseProcess
    conn: Connection
    heartbeat: Any  # shared double: time.monotonic() at the start of the current call
    started_at: float
    ready: bool = False
    job_sent_at: float = 0.0
    assigned: deque[int] = field(default_factory=deque)  # sent, not answered, in order


@dataclass
class _CallState:
    """Book-keeping of one batch call."""

    payloads: list[_Payload]
    results: list[Any]
    timeouts: list[int]
    pending: deque[int]
    start_failures: int = 0


class EquivalenceChecker:
    """A warm pool of math-verify worker processes with hard per-check deadlines.

    Args:
        workers: worker processes (each check runs on one worker's main thread).
        timeout_s: math-verify's own per-call timeout inside a worker (a SIGALRM,
            rounded up to whole seconds).
        kill_after_s: hard deadline for one math-verify call, enforced by the host
            by killing the worker; default `2 * ceil(timeout_s) + 2`, so it only
            catches calls the alarm cannot interrupt.
        memory_limit_mb: address-space limit of each worker (RLIMIT_AS), so a
            pathological answer raises MemoryError there instead of eating the
            host's memory; None for no limit.

    Thread-safe: concurrent calls are served one batch at a time.
    """

    def __init__(
        self,
        workers: int = 1,
        timeout_s: float = 5.0,
        kill_after_s: float | None = None,
        memory_limit_mb: int | None = 2048,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        if kill_after_s is not None and not kill_after_s > 0:
            raise ValueError(f"kill_after_s must be > 0 or None, got {kill_after_s}")
        if memory_limit_mb is not None and memory_limit_mb < 256:
            raise ValueError(f"memory_limit_mb must be >= 256 or None, got {memory_limit_mb}")
        self._alarm_s = max(1, math.ceil(timeout_s))
        self.timeout_s = timeout_s
        self.kill_after_s = kill_after_s if kill_after_s is not None else 2 * self._alarm_s + 2
        self._memory_limit_mb = memory_limit_mb
        self._ctx = multiprocessing.get_context(_START_METHOD)
        self._lock = threading.Lock()
        self._closed = False
        self._worker_items = 0
        self._timeouts = 0
        self._restarts = 0
        self._workers: list[_Worker] = [self._start_worker() for _ in range(workers)]
        # Kill the children even if the caller forgets close().
        self._finalizer = weakref.finalize(self, _shutdown_workers, self._workers)
        self._wait_until_ready()

    # --- public API -------------------------------------------------------------

    def cluster(
        self, groups: Sequence[Sequence[str | None]], kind: AnswerKind = "math"
    ) -> list[list[int | None]]:
        """A cluster id per answer for each group (None where the answer is None).

        Ids count from 0 in order of each cluster's first member, so the smallest
        id of a size tie is the cluster that appeared first.
        """
        return self.cluster_batch(groups, kind).cluster_ids

    def cluster_batch(
        self, groups: Sequence[Sequence[str | None]], kind: AnswerKind = "math"
    ) -> ClusterBatch:
        """Like `cluster`, also returning the number of timed-out checks per group."""
        _check_kind(kind)
        keyed = [_distinct_keys(group, kind) for group in groups]
        payloads: list[_Payload] = []
        owners: list[int] = []  # group index of each payload
        for index, (_, distinct) in enumerate(keyed):
            if kind == "math" and len(distinct) > 1:
                payloads.append(("cluster", distinct))
                owners.append(index)
        results, timeouts = self._run(payloads)
        assignments: list[list[int]] = [list(range(len(distinct))) for _, distinct in keyed]
        group_timeouts = [0] * len(keyed)
        for owner, assignment, count in zip(owners, results, timeouts, strict=True):
            assignments[owner] = assignment
            group_timeouts[owner] = count
        cluster_ids = [
            [None if key is None else assignment[distinct.index(key)] for key in keys]
            for (keys, distinct), assignment in zip(keyed, assignments, strict=True)
        ]
        return ClusterBatch(cluster_ids=cluster_ids, timeouts=group_timeouts)

    def equivalent(
        self, pairs: Sequence[tuple[str, str]], kind: AnswerKind = "math"
    ) -> list[bool | None]:
        """For each pair: are the two answers equal? None when the check timed out."""
        _check_kind(kind)
        answers: list[bool | None] = []
        payloads: list[_Payload] = []
        slots: list[int] = []
        for index, (first, second) in enumerate(pairs):
            first_key, second_key = _answer_key(first, kind), _answer_key(second, kind)
            if first_key is None or second_key is None:
                answers.append(False)
            elif first_key == second_key or kind == "mcq":
                answers.append(first_key == second_key)
            else:
                answers.append(False)
                payloads.append(("pair", (first_key, second_key)))
                slots.append(index)
        results, _ = self._run(payloads)
        for slot, result in zip(slots, results, strict=True):
            answers[slot] = result
        return answers

    @property
    def stats(self) -> CheckerStats:
        """Counters since creation: items sent to workers, timeouts, restarts."""
        return CheckerStats(self._worker_items, self._timeouts, self._restarts)

    def close(self) -> None:
        """Stop the worker processes; the checker cannot be used afterwards."""
        with self._lock:
            self._closed = True
            self._finalizer()

    def __enter__(self) -> EquivalenceChecker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- the pool -----------------------------------------------------------------

    def _start_worker(self) -> _Worker:
        host_end, worker_end = self._ctx.Pipe(duplex=True)
        heartbeat = self._ctx.RawValue("d", 0.0)
        process = self._ctx.Process(
            target=_worker_main,
            args=(worker_end, heartbeat, self._alarm_s, self._memory_limit_mb),
            name="math-verify-worker",
            daemon=True,
        )
        process.start()
        worker_end.close()  # the child holds its own copy
        return _Worker(process, host_end, heartbeat, started_at=time.monotonic())

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + _STARTUP_TIMEOUT_S
        while not all(worker.ready for worker in self._workers):
            waiting = [worker for worker in self._workers if not worker.ready]
            if time.monotonic() > deadline or not all(w.process.is_alive() for w in waiting):
                self._finalizer()
                raise RuntimeError(
                    f"math-verify workers did not start within {_STARTUP_TIMEOUT_S:.0f} s or "
                    "exited; they start with spawn, so a script that creates the checker needs "
                    "an `if __name__ == '__main__':` guard, and math-verify must import in a "
                    "fresh interpreter"
                )
            for conn in wait([worker.conn for worker in waiting], timeout=_POLL_S):
                worker = next(w for w in waiting if w.conn is conn)
                worker.ready = _receive_ready(worker.conn)

    def _run(self, payloads: list[_Payload]) -> tuple[list[Any], list[int]]:
        """Run payloads on the pool; results and timeout counts in payload order."""
        if not payloads:
            return [], []
        with self._lock:
            if self._closed:
                raise RuntimeError("EquivalenceChecker is closed")
            state = _CallState(
                payloads=payloads,
                results=[_fallback(payload) for payload in payloads],
                timeouts=[0] * len(payloads),
                pending=deque(range(len(payloads))),
            )
            while state.pending or any(worker.assigned for worker in self._workers):
                self._dispatch(state)
                self._receive(state)
                self._enforce_deadlines(state)
            self._worker_items += len(payloads)
            self._timeouts += sum(state.timeouts)
            return state.results, state.timeouts

    def _dispatch(self, state: _CallState) -> None:
        idle = [w for w in self._workers if w.ready and not w.assigned]
        for position, worker in enumerate(idle):
            if not state.pending:
                return
            share = math.ceil(len(state.pending) / (len(idle) - position))
            chunk = [state.pending.popleft() for _ in range(min(share, _MAX_CHUNK))]
            worker.assigned.extend(chunk)
            worker.job_sent_at = time.monotonic()
            try:
                worker.conn.send([(key, state.payloads[key]) for key in chunk])
            except (OSError, ValueError):
                # It died while idle: none of this chunk was started, so requeue it all.
                state.pending.extendleft(reversed(worker.assigned))
                worker.assigned.clear()
                self._replace(worker, state, reason="its pipe broke")

    def _receive(self, state: _CallState) -> None:
        listening = [w for w in self._workers if w.assigned or not w.ready]
        if not listening:
            if state.pending:
                time.sleep(_POLL_S)  # nothing to wait on yet: do not spin
            return
        for conn in wait([worker.conn for worker in listening], timeout=_POLL_S):
            worker = next(w for w in listening if w.conn is conn)
            if not self._drain(worker, state):
                self._replace(worker, state, reason="it exited")

    def _drain(self, worker: _Worker, state: _CallState) -> bool:
        """Read every message waiting from a worker; False if it has gone."""
        try:
            while worker.conn.poll():
                message = worker.conn.recv()
                if message[0] == "ready":
                    worker.ready = True
                    continue
                _, key, result, timeouts = message
                if worker.assigned and worker.assigned[0] == key:
                    worker.assigned.popleft()
                    state.results[key] = result
                    state.timeouts[key] = timeouts
        except (EOFError, OSError):
            return False
        return True

    def _enforce_deadlines(self, state: _CallState) -> None:
        now = time.monotonic()
        for worker in list(self._workers):
            if not worker.ready:
                if now - worker.started_at > _STARTUP_TIMEOUT_S or not worker.process.is_alive():
                    state.start_failures += 1
                    self._replace(worker, state, reason="it did not start")
                continue
            if not worker.assigned:
                continue
            # Both clocks are CLOCK_MONOTONIC, shared by all processes on Linux.
            running_since = max(worker.heartbeat.value, worker.job_sent_at)
            if now - running_since > self.kill_after_s:
                self._drain(worker, state)  # keep results that arrived meanwhile
                self._replace(worker, state, reason=f"a check ran over {self.kill_after_s:.1f} s")
            elif not worker.process.is_alive():
                self._drain(worker, state)
                self._replace(worker, state, reason="it died")
        if state.start_failures >= _MAX_START_FAILURES:
            logger.error("math-verify workers keep failing to start; giving up on this batch")
            for key in state.pending:
                state.timeouts[key] += 1
            state.pending.clear()

    def _replace(self, worker: _Worker, state: _CallState, reason: str) -> None:
        """Kill a worker, mark its current item timed out, requeue the rest."""
        if worker.assigned:
            key = worker.assigned.popleft()
            state.results[key] = _fallback(state.payloads[key])
            state.timeouts[key] += 1
            state.pending.extendleft(reversed(worker.assigned))
            worker.assigned.clear()
        logger.warning("replacing math-verify worker pid %s: %s", worker.process.pid, reason)
        _stop_worker(worker, graceful=False)
        self._workers[self._workers.index(worker)] = self._start_worker()
        self._restarts += 1


# --- host helpers -------------------------------------------------------------------


def _check_kind(kind: str) -> None:
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")


def _answer_key(answer: str | None, kind: str) -> str | None:
    """The string compared for equality: normalised (math) or the letter (mcq)."""
    if answer is None:
        return None
    key = answer.strip().upper() if kind == "mcq" else normalize_answer(answer)
    return key or None  # an answer that normalises to nothing is no answer


def _distinct_keys(group: Sequence[str | None], kind: str) -> tuple[list[str | None], list[str]]:
    """Each answer's key, and the distinct keys in order of first appearance."""
    keys = [_answer_key(answer, kind) for answer in group]
    return keys, list(dict.fromkeys(key for key in keys if key is not None))


def _fallback(payload: _Payload) -> Any:
    """The result of an item whose check never finished: nothing merged / unknown."""
    kind, data = payload
    return list(range(len(data))) if kind == "cluster" else None


def _receive_ready(conn: Connection) -> bool:
    try:
        return bool(conn.recv()[0] == "ready")
    except (EOFError, OSError):
        return False


def _stop_worker(worker: _Worker, graceful: bool) -> None:
    if graceful and worker.process.is_alive():
        try:
            worker.conn.send(None)
            worker.process.join(timeout=2.0)
        except (OSError, ValueError):
            pass
    if worker.process.is_alive():
        worker.process.kill()
    worker.process.join(timeout=5.0)
    worker.conn.close()


def _shutdown_workers(workers: list[_Worker]) -> None:
    for worker in workers:
        _stop_worker(worker, graceful=True)


# --- worker process -------------------------------------------------------------------


def _worker_main(
    conn: Connection, heartbeat: Any, alarm_s: int, memory_limit_mb: int | None
) -> None:
    """Entry point of a worker process: serve chunks of items until told to stop."""
    if memory_limit_mb is not None:
        import resource

        limit = memory_limit_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    session = _MathVerifySession(alarm_s, heartbeat)
    conn.send(("ready",))
    while True:
        try:
            chunk = conn.recv()
        except (EOFError, OSError):
            return
        if chunk is None:
            return
        for key, (kind, data) in chunk:
            heartbeat.value = time.monotonic()
            result: list[int] | bool | None
            if kind == "cluster":
                result, timeouts = session.cluster(data)
            else:
                result, timeouts = session.pair(*data)
            conn.send(("item", key, result, timeouts))
        heartbeat.value = 0.0


class _MathVerifySession:
    """math-verify calls on this process's main thread, where SIGALRM works."""

    def __init__(self, alarm_s: int, heartbeat: Any) -> None:
        # Imported here so that the host process never loads sympy.
        from math_verify import parse, verify
        from math_verify.errors import TimeoutException

        self._parse_fn = parse
        self._verify_fn = verify
        self._timeout_error = TimeoutException
        self._alarm_s = alarm_s
        self._heartbeat = heartbeat
        self._parsed: dict[str, tuple[list[Any], bool]] = {}

    def cluster(self, answers: list[str]) -> tuple[list[int], int]:
        """Greedy clustering against representatives; (cluster per answer, timeouts).

        After a comparison times out, the longer of its two answers (the likely
        culprit, e.g. a power tower) is compared no more within this group, so
        one pathological answer costs about one timeout, not one per cluster.
        """
        parsed = [self._parse(answer) for answer in answers]
        timeouts = sum(timed_out for _, timed_out in parsed)
        slow: set[int] = set()
        representatives: list[int] = []
        assignment: list[int] = []
        for index, (expression, _) in enumerate(parsed):
            for cluster_id, representative in enumerate(representatives):
                if index in slow or representative in slow:
                    continue
                equal = self._equal(expression, parsed[representative][0])
                if equal is None:
                    timeouts += 1
                    longer = max((representative, index), key=lambda i: len(answers[i]))
                    slow.add(longer)
                if equal:
                    assignment.append(cluster_id)
                    break
            else:
                representatives.append(index)
                assignment.append(len(representatives) - 1)
        return assignment, timeouts

    def pair(self, first: str, second: str) -> tuple[bool | None, int]:
        """(equal?, timeouts); None when a parse or a comparison timed out."""
        (first_parsed, first_timed_out), (second_parsed, second_timed_out) = (
            self._parse(first),
            self._parse(second),
        )
        equal = self._equal(first_parsed, second_parsed)
        timeouts = first_timed_out + second_timed_out + (equal is None)
        if not equal and (first_timed_out or second_timed_out):
            equal = None  # an answer that could not be parsed in time: unknown
        return equal, timeouts

    def _parse(self, answer: str) -> tuple[list[Any], bool]:
        """(math-verify parse of the answer as LaTeX, timed out?); cached per worker."""
        if answer in self._parsed:
            return self._parsed[answer]
        self._heartbeat.value = time.monotonic()
        try:
            parsed = self._parse_fn(
                f"${answer}$", parsing_timeout=self._alarm_s, raise_on_error=True
            )
            outcome = (list(parsed), False)
        except self._timeout_error:
            outcome = ([], True)
        except Exception:  # math-verify's own errors: an unparseable answer
            outcome = ([], False)
        if len(self._parsed) > 10_000:
            self._parsed.clear()  # bounded: answers rarely repeat across tasks
        self._parsed[answer] = outcome
        return outcome

    def _equal(self, first: list[Any], second: list[Any]) -> bool | None:
        """verify in both directions; True if either says equal, None on a timeout."""
        if not first or not second:
            return False
        forward = self._verify(first, second)
        if forward:
            return True
        if forward is None:
            return None  # the reverse direction would most likely time out too
        backward = self._verify(second, first)
        if backward:
            return True
        return None if backward is None else False

    def _verify(self, gold: list[Any], target: list[Any]) -> bool | None:
        """Any (gold, target) candidate pair equal? One call per pair, as math-verify
        does, so that one failing pair does not hide the others; None on a timeout."""
        timed_out = False
        for gold_item in gold:
            for target_item in target:
                self._heartbeat.value = time.monotonic()
                try:
                    if self._verify_fn(
                        gold_item,
                        target_item,
                        timeout_seconds=self._alarm_s,
                        raise_on_error=True,
                    ):
                        return True
                except self._timeout_error:
                    timed_out = True
                except Exception:  # a comparison sympy cannot do: not equal
                    continue
        return None if timed_out else False
