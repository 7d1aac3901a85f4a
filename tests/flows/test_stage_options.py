"""Stage timeouts and retries, on Prefect's ephemeral server with tasks that fail on purpose."""

from __future__ import annotations

import time

import pytest
from prefect import flow, task
from prefect.cache_policies import NONE

from flows.generate import staged
from selfplay.config import FlowsConfig

FLOWS = FlowsConfig(retries=2, retry_delay_s=0, stage_timeout_s=5)


def _flaky(error: type[Exception], failures: int):
    calls: list[float] = []

    @task(cache_policy=NONE)
    def stage() -> int:
        calls.append(time.monotonic())
        if len(calls) <= failures:
            raise error("stage failed")
        return len(calls)

    return stage, calls


def test_a_passing_failure_is_retried_until_the_stage_succeeds():
    stage, calls = _flaky(RuntimeError, failures=2)

    @flow
    def run() -> int:
        return staged(stage, FLOWS, retry=True)()

    assert run() == 3 and len(calls) == 3


def test_bad_input_fails_at_once():
    stage, calls = _flaky(ValueError, failures=1)

    @flow
    def run() -> int:
        return staged(stage, FLOWS, retry=True)()

    with pytest.raises(ValueError, match="stage failed"):
        run()
    assert len(calls) == 1


def test_a_stage_without_retry_fails_on_its_first_error():
    stage, calls = _flaky(RuntimeError, failures=1)

    @flow
    def run() -> int:
        return staged(stage, FLOWS)()

    with pytest.raises(RuntimeError):
        run()
    assert len(calls) == 1


def test_a_stage_that_runs_too_long_times_out():
    @task(cache_policy=NONE)
    def slow() -> None:
        # Short sleeps: under pytest-timeout's SIGALRM handler Prefect times a task out from
        # a watcher thread, whose exception lands between Python steps, not inside one sleep.
        for _ in range(300):
            time.sleep(0.1)

    @flow
    def run() -> None:
        staged(slow, FlowsConfig(stage_timeout_s=1))()

    started = time.monotonic()
    with pytest.raises(TimeoutError):
        run()
    assert time.monotonic() - started < 20
