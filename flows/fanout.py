"""Fan-out of the stages that split into independent pieces, on the configured task runner.

Three stages fan out: verification (labelling each task's Solver samples), held-out scoring
(the completions still come from one engine call in the flow's process; only the scoring and
the HumanEval runs fan out) and corpus preprocessing (reading the corpus's files, then
chunking their documents). Each splits its input into `config.flows.fanout_chunks`
contiguous slices, submits one Prefect task per slice to the runner `config.flows.task_runner`
selects, and concatenates the results in input order, so the warehouse rows are the same
whichever runner ran the pieces.

- `threads` (default): Prefect's ThreadPoolTaskRunner. Pieces share the stage's own
  EquivalenceChecker and SandboxPool: both are thread-safe (one batch at a time behind a
  lock, spread over their own worker processes), so nothing starts twice, and a piece
  waiting on one pool can overlap a piece using the other.
- `ray`: prefect-ray's RayTaskRunner. A piece runs in a Ray worker process on plain inputs
  plus settings, and uses that process's checker and pool, started on first use and kept,
  so a warm worker serves later pieces, stages and iterations without starting new ones.

What prefect-ray 0.6 on Prefect 3.7 needs, found by running it here:

- A task run in a Ray worker reports to the Prefect API named in the settings shipped with
  it. With no PREFECT_API_URL the flow uses Prefect's ephemeral server, a subprocess of this
  process on 127.0.0.1, and every Ray worker would start one of its own on the same SQLite
  file (they race its migrations). So pieces are submitted with this process's API address;
  Ray workers on other machines need a server they can reach, named by PREFECT_API_URL.
- The driver pickles the current flow and task run contexts with every piece. Their
  parameters hold the warehouse writer and the engines, which cannot be pickled, and their
  flow and task objects make each worker import the module defining them (flows.run pulls in
  torch, TRL and vLLM: ~9 s and ~600 MB per worker). Pieces need only the run ids that file
  their task runs under the flow run, so they ship light copies (`_shippable_run_contexts`).
- RayTaskRunner shuts down a local Ray it started when its block ends: once per stage here.
  Ray is started (or joined) once per process instead, so workers stay warm for the run.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast
from urllib.parse import urlparse

from prefect import Task, flow, get_run_logger, task
from prefect.cache_policies import NONE
from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext, TaskRunContext
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from corpora import (
    Document,
    FileRead,
    chunk_documents,
    collect_reads,
    corpus_files,
    read_corpus_file,
    sample_corpus_path,
)
from selfplay.config import Config, ConfigError, FlowsConfig
from selfplay.evaluation import HUMANEVAL, EvalItem, EvalResult, score
from selfplay.generate import ProposedTask, SolverSample, TaskLabel, label
from selfplay.kinds import EXECUTED_KINDS
from verifiers.equivalence import EquivalenceChecker
from verifiers.sandbox import SandboxLimits, SandboxPool

if TYPE_CHECKING:
    from prefect_ray import RayTaskRunner

Item = TypeVar("Item")
Result = TypeVar("Result")

# The object store of a local Ray: pieces carry text, not tensors, and Ray's default (30 %
# of RAM, in /dev/shm) would take memory that vLLM and training need.
LOCAL_OBJECT_STORE_BYTES = 256 * 1024**2
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


# --- the runner and the split -----------------------------------------------------------


def build_task_runner(flows: FlowsConfig) -> TaskRunner[Any]:
    """The task runner `flows.task_runner` names, not yet started."""
    if flows.task_runner == "threads":
        return ThreadPoolTaskRunner(max_workers=flows.fanout_chunks)
    try:
        import ray  # noqa: F401  (prefect_ray imports it lazily)
        from prefect_ray import RayTaskRunner
    except ImportError as exc:
        raise ConfigError(
            f"flows.task_runner is 'ray' but prefect-ray cannot be imported ({exc}); install "
            "the `ray` extra (pip install 'selfplay[ray]') or set flows.task_runner=threads"
        ) from exc
    if flows.ray_address is not None:
        return RayTaskRunner(address=flows.ray_address)  # a running cluster has its sizes
    return RayTaskRunner(
        init_kwargs={"object_store_memory": LOCAL_OBJECT_STORE_BYTES, "include_dashboard": False}
    )


def split_contiguous(items: Sequence[Item], pieces: int) -> list[list[Item]]:
    """`items` cut into at most `pieces` non-empty contiguous slices, sizes differing by <= 1."""
    count = min(pieces, len(items))
    slices: list[list[Item]] = []
    start = 0
    for index in range(count):
        end = start + len(items) // count + (index < len(items) % count)
        slices.append(list(items[start:end]))
        start = end
    return slices


def fan_out(
    flows: FlowsConfig, piece: Task[..., list[Result]], items: Sequence[Item], **shared: Any
) -> list[Result]:
    """`piece(items=slice, **shared)` as one Prefect task per contiguous slice of `items` on
    the configured runner; the slices' results concatenated in input order."""
    slices = split_contiguous(items, flows.fanout_chunks)
    if not slices:
        return []
    runner = build_task_runner(flows)
    with ExitStack() as stack:
        if flows.task_runner == "ray":
            ray_runner = cast("RayTaskRunner[Any]", runner)
            stack.enter_context(_ray_submission(ray_runner, flows, piece))
        stack.enter_context(runner)
        futures = [runner.submit(piece, {"items": part, **shared}) for part in slices]
        return [result for future in futures for result in future.result()]


@contextmanager
def _ray_submission(runner: RayTaskRunner[Any], flows: FlowsConfig, piece: Task) -> Iterator[None]:
    """Ray up for the whole process, and what pieces ship to Ray workers (see the module
    docstring): this process's Prefect API address and light copies of the run contexts."""
    import ray

    api_url = _api_url_for_workers(flows.ray_address)  # before joining: a wrong one fails fast
    if not ray.is_initialized():
        # Started here, not by the runner, which would shut it down at the end of the stage.
        ray.init(address=runner.address, **runner.init_kwargs)
    with ExitStack() as stack:
        stack.enter_context(temporary_settings(updates={PREFECT_API_URL: api_url}))
        stack.enter_context(_shippable_run_contexts(piece))
        yield


def _api_url_for_workers(ray_address: str | None) -> str:
    """The Prefect API this process reports to: PREFECT_API_URL, else the ephemeral server."""
    url = PREFECT_API_URL.value() or str(get_client(sync_client=True).api_url)
    if ray_address and ray_address not in ("auto", "local"):
        ray_host = urlparse(ray_address if "://" in ray_address else f"//{ray_address}").hostname
        if urlparse(url).hostname in _LOOPBACK and ray_host not in _LOOPBACK:
            raise ConfigError(
                f"the Ray cluster at {ray_address} cannot reach the Prefect API at {url} (this "
                "machine only); start a server it can reach (prefect server start --host "
                "0.0.0.0) and set PREFECT_API_URL to its address"
            )
    return url


@flow(name="fan-out-parent")
def _parent_flow_stand_in() -> None:
    """Never run: stands in for the parent flow in the contexts shipped to Ray workers."""


@contextmanager
def _shippable_run_contexts(piece: Task) -> Iterator[None]:
    """Copies of the current flow and task run contexts without their parameters, and with
    light stand-ins for their flow and task objects: from those a worker takes only the run
    ids (and the flow's task runner, for tasks a piece would submit; ours submit none)."""
    with ExitStack() as stack:
        flow_run = FlowRunContext.get()
        if flow_run is not None:
            update = {"parameters": {}, "flow": _parent_flow_stand_in}
            stack.enter_context(flow_run.model_copy(update=update))
        task_run = TaskRunContext.get()
        if task_run is not None:
            stack.enter_context(task_run.model_copy(update={"parameters": {}, "task": piece}))
        yield


# --- verifiers of a piece ------------------------------------------------------------------


@dataclass(frozen=True)
class CheckerSettings:
    """How to start an EquivalenceChecker like the stage's, in a Ray worker."""

    workers: int
    timeout_s: float


@dataclass(frozen=True)
class PoolSettings:
    """How to start a SandboxPool like the stage's, in a Ray worker."""

    workers: int
    limits: SandboxLimits


# A Ray worker's own checkers and pools, by settings: started on first use, kept for later
# pieces; their worker processes end with it (finalizers, or their pipes closing on a kill).
_process_lock = threading.Lock()
_process_checkers: dict[CheckerSettings, EquivalenceChecker] = {}
_process_pools: dict[PoolSettings, SandboxPool] = {}


def _checker(given: EquivalenceChecker | CheckerSettings) -> EquivalenceChecker:
    """The stage's own checker (thread runner), or this process's with these settings."""
    if isinstance(given, EquivalenceChecker):
        return given
    with _process_lock:
        if given not in _process_checkers:
            _process_checkers[given] = EquivalenceChecker(given.workers, given.timeout_s)
        return _process_checkers[given]


def _pool(given: SandboxPool | PoolSettings | None) -> SandboxPool | None:
    """The stage's own pool (thread runner), or this process's with these settings."""
    if not isinstance(given, PoolSettings):
        return given
    with _process_lock:
        if given not in _process_pools:
            _process_pools[given] = SandboxPool(given.workers, given.limits)
        return _process_pools[given]


@dataclass(frozen=True)
class ProcessVerifiers:
    """What this process started for pieces: one checker and pool per settings at most."""

    pid: int
    checkers: int
    pools: int


def process_verifiers() -> ProcessVerifiers:
    with _process_lock:
        return ProcessVerifiers(os.getpid(), len(_process_checkers), len(_process_pools))


# --- verification ---------------------------------------------------------------------------

TaskWithSamples = tuple[ProposedTask, list[SolverSample]]


@task(name="label-piece", cache_policy=NONE)
def label_piece(
    items: list[TaskWithSamples],
    config: Config,
    checker: EquivalenceChecker | CheckerSettings,
    pool: SandboxPool | PoolSettings | None,
) -> list[TaskLabel]:
    tasks = [task for task, _ in items]
    samples = [sample for _, task_samples in items for sample in task_samples]
    executed = any(task.slot.kind in EXECUTED_KINDS for task in tasks)
    return label(_checker(checker), tasks, samples, config, _pool(pool) if executed else None)


def label_fanned_out(
    checker: EquivalenceChecker,
    tasks: list[ProposedTask],
    samples: list[SolverSample],
    config: Config,
    pool: SandboxPool | None = None,
) -> list[TaskLabel]:
    """`selfplay.generate.label`, one piece per slice of the tasks that have samples."""
    by_task: dict[str, list[SolverSample]] = {}
    for sample in samples:
        by_task.setdefault(sample.task_id, []).append(sample)
    items = [(task, by_task[task.task_id]) for task in tasks if task.task_id in by_task]
    # Threads share the stage's own checker and pool: each is thread-safe, serving one
    # batch at a time behind a lock. A Ray worker starts its own, with the same settings.
    verifiers: dict[str, Any] = {"checker": checker, "pool": pool}
    if config.flows.task_runner == "ray":
        labels = config.labels
        verifiers = {
            "checker": CheckerSettings(labels.equivalence_workers, labels.equivalence_timeout_s),
            "pool": PoolSettings(config.executor.workers, pool.limits) if pool else None,
        }
    return fan_out(config.flows, label_piece, items, config=config, **verifiers)


# --- evaluation ------------------------------------------------------------------------------


@task(name="score-piece", cache_policy=NONE)
def score_piece(
    items: list[tuple[EvalItem, str]], pool: SandboxPool | PoolSettings
) -> list[EvalResult]:
    runs_code = any(item.benchmark == HUMANEVAL for item, _ in items)
    sandbox = _pool(pool) if runs_code else None
    return score([item for item, _ in items], [completion for _, completion in items], sandbox)


def score_fanned_out(
    config: Config, items: list[EvalItem], completions: list[str], pool: SandboxPool
) -> list[EvalResult]:
    """`selfplay.evaluation.score`, one piece per slice of the items and their completions."""
    pairs = list(zip(items, completions, strict=True))
    if config.flows.task_runner == "ray":  # a Ray worker starts its own, like this one
        settings = PoolSettings(config.executor.workers, pool.limits)
        return fan_out(config.flows, score_piece, pairs, pool=settings)
    return fan_out(config.flows, score_piece, pairs, pool=pool)


# --- corpus preprocessing ---------------------------------------------------------------------


@task(name="read-corpus-piece", cache_policy=NONE)
def read_corpus_piece(items: list[Path], path: Path) -> list[FileRead]:
    return [read_corpus_file(file, path) for file in items]


@task(name="chunk-corpus-piece", cache_policy=NONE)
def chunk_corpus_piece(items: list[Document], max_chars: int, min_chars: int) -> list[Document]:
    return chunk_documents(items, max_chars=max_chars, min_chars=min_chars)


def load_documents_fanned_out(config: Config) -> list[Document]:
    """`selfplay.generate.load_documents` inside a flow run: the corpus's files read one piece
    per slice of them, then the documents chunked one piece per slice of them."""
    path = config.corpus.path or sample_corpus_path()
    reads = fan_out(config.flows, read_corpus_piece, corpus_files(path), path=path)
    loaded = collect_reads(reads, path)
    logger = get_run_logger()
    for skipped in loaded.skipped:
        logger.warning("corpus: skipped %s", skipped)
    corpus = config.corpus
    return fan_out(
        config.flows,
        chunk_corpus_piece,
        loaded.documents,
        max_chars=corpus.chunk_chars,
        min_chars=corpus.min_chars,
    )
