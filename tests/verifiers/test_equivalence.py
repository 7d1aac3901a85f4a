"""EquivalenceChecker with real math-verify in real worker processes.

One shared checker serves the fast tests; the timeout tests start their own
(short timeouts) so that a kill there cannot disturb the others.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Iterator

import pytest

from verifiers.equivalence import EquivalenceChecker
from verifiers.majority import majority_vote

# Slow for sympy but interruptible by math-verify's own alarm (~forever otherwise).
POWER_TOWER = "9^{9^{9^{9}}}"
# Keeps sympy busy far longer than any test waits; used to force the host's kill.
HUGE_FACTORIAL = "(10^{10^{6}})!"


@pytest.fixture(scope="module")
def checker() -> Iterator[EquivalenceChecker]:
    with EquivalenceChecker(workers=1, timeout_s=5.0) as shared:
        yield shared


def _worker_pids() -> set[int | None]:
    return {p.pid for p in multiprocessing.active_children() if p.name == "math-verify-worker"}


# --- equivalent ---------------------------------------------------------------------


def test_one_half_in_three_spellings_are_equivalent(checker: EquivalenceChecker) -> None:
    pairs = [("1/2", "0.5"), ("0.5", r"\frac{1}{2}"), (r"\frac{1}{2}", "1/2"), ("$0.50$", "1/2")]
    assert checker.equivalent(pairs) == [True, True, True, True]


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        ("2", "3", False),
        ("x=2", "2", True),
        ("1,000", "1000", True),
        (r"\sqrt{2}", "2^{1/2}", True),
        ("(x+1)^2", "x^2+2x+1", True),
        ("1/3", "0.333", False),  # math-verify rounds floats to 6 places, not 3
        ("x=2", "y=2", True),  # normalisation drops a leading "x =": same value
        ("x=1,y=2", "x=2,y=1", False),
        ("50\\%", "0.5", True),
        ("5", "", False),  # no answer is never equal
    ],
)
def test_equivalent_pairs(
    checker: EquivalenceChecker, first: str, second: str, expected: bool
) -> None:
    assert checker.equivalent([(first, second)]) == [expected]


def test_equivalent_mcq_compares_letters_only(checker: EquivalenceChecker) -> None:
    pairs = [("B", "b"), ("B", "C"), ("1/2", "0.5")]
    assert checker.equivalent(pairs, kind="mcq") == [True, False, False]


def test_either_direction_of_verify_suffices(checker: EquivalenceChecker) -> None:
    from math_verify import parse, verify

    # math-verify alone is asymmetric here: a set target may match a relation gold.
    interval, relation = parse("$(1,2)$"), parse("$1<x<2$")
    assert verify(interval, relation) is False
    assert verify(relation, interval) is True
    assert checker.equivalent([("(1,2)", "1<x<2"), ("1<x<2", "(1,2)")]) == [True, True]
    assert checker.cluster([["(1,2)", "1<x<2", "(2,3)"]]) == [[0, 0, 1]]


# --- cluster ------------------------------------------------------------------------


def test_cluster_eight_answers(checker: EquivalenceChecker) -> None:
    answers = ["1/2", "0.5", "3", None, r"\frac{1}{2}", "x = 3", "7", "$0.50$"]
    batch = checker.cluster_batch([answers])
    assert batch.cluster_ids == [[0, 0, 1, None, 0, 1, 2, 0]]
    assert batch.timeouts == [0]
    label = majority_vote(answers, batch.cluster_ids[0])
    assert label.label == "1/2"
    assert label.majority_share == 4 / 8
    assert label.cluster_sizes == (4, 2, 1)


def test_cluster_many_groups_in_one_batch(checker: EquivalenceChecker) -> None:
    groups: list[list[str | None]] = [
        ["2", "2", "2.0", "3"],
        [None, None],
        [],
        ["4", "4"],  # one distinct string: settled without a worker
        ["1,000", "1000", "10^3", "999"],
    ] * 20
    expected = [[0, 0, 0, 1], [None, None], [], [0, 0], [0, 0, 0, 1]] * 20
    assert checker.cluster(groups) == expected


def test_cluster_ids_follow_first_appearance(checker: EquivalenceChecker) -> None:
    # A tie (2 vs 2): ids count in order of first members, so the tie-break is id 0.
    answers: list[str | None] = ["5", "6", "10/2", r"\frac{12}{2}"]
    ids = checker.cluster([answers])[0]
    assert ids == [0, 1, 0, 1]
    assert majority_vote(answers, ids).label == "5"


def test_cluster_mcq_uses_exact_letters(checker: EquivalenceChecker) -> None:
    groups: list[list[str | None]] = [["A", "b", "B", None, "C", "A"]]
    assert checker.cluster(groups, kind="mcq") == [[0, 1, 1, None, 2, 0]]


def test_unknown_kind_is_rejected(checker: EquivalenceChecker) -> None:
    with pytest.raises(ValueError, match="kind must be one of"):
        checker.cluster([["1"]], kind="code")  # type: ignore[arg-type]


def test_empty_batches(checker: EquivalenceChecker) -> None:
    assert checker.cluster([]) == []
    assert checker.equivalent([]) == []


# --- threads ------------------------------------------------------------------------


def test_works_from_non_main_threads(checker: EquivalenceChecker) -> None:
    results: dict[str, object] = {}

    def run(name: str) -> None:
        results[name + "_cluster"] = checker.cluster([["1/2", "0.5", "2", r"\frac{4}{2}"]])
        results[name + "_equivalent"] = checker.equivalent([("1/2", "0.5"), ("2", "3")])

    threads = [threading.Thread(target=run, args=(f"t{i}",)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    for name in ("t0", "t1"):
        assert results[name + "_cluster"] == [[0, 0, 1, 1]]
        assert results[name + "_equivalent"] == [True, False]


# --- timeouts -----------------------------------------------------------------------


def test_slow_answer_times_out_inside_the_worker_and_pool_survives() -> None:
    with EquivalenceChecker(workers=1, timeout_s=1.0) as quick:
        quick.equivalent([("1", "2")])  # warm up: sympy's lazy imports run on first use
        start = time.monotonic()
        batch = quick.cluster_batch([[POWER_TOWER, "1", "1", "2"], ["1/2", "0.5"]])
        elapsed = time.monotonic() - start
        assert elapsed < 10.0, f"pathological group took {elapsed:.1f} s"
        assert batch.cluster_ids == [[0, 1, 1, 2], [0, 0]]
        # Blamed on the longer answer, the tower costs one timeout, not one per cluster.
        assert batch.timeouts == [1, 0]
        assert quick.equivalent([(POWER_TOWER, "1")]) == [None]
        assert quick.stats.timeouts == 2, quick.stats
        assert quick.stats.worker_restarts == 0  # math-verify's own alarm did it
        assert quick.equivalent([("1/2", "0.5"), ("2", "3")]) == [True, False]


def test_hard_deadline_kills_and_replaces_a_stuck_worker() -> None:
    # The in-worker alarm (60 s) is set above the host deadline (3 s): this
    # stands for a call the alarm cannot interrupt, so the host must kill it.
    with EquivalenceChecker(workers=1, timeout_s=60.0, kill_after_s=3.0) as strict:
        strict.equivalent([("1", "2")])  # warm up: sympy's lazy imports run on first use
        before = _worker_pids()
        start = time.monotonic()
        batch = strict.cluster_batch([["1", "2.0", "2"], [HUGE_FACTORIAL, "1"], ["1/2", "0.5"]])
        elapsed = time.monotonic() - start
        assert elapsed < 20.0, f"stuck batch took {elapsed:.1f} s"
        # Groups before and after the stuck one keep their real answers.
        assert batch.cluster_ids == [[0, 1, 1], [0, 1], [0, 0]]
        assert batch.timeouts == [0, 1, 0]
        assert strict.stats.worker_restarts == 1, strict.stats
        assert _worker_pids() != before  # a new process took the place of the old
        assert strict.equivalent([(HUGE_FACTORIAL, "2"), ("0.25", "1/4")]) == [None, True]
        assert strict.stats.worker_restarts == 2


# --- lifecycle ----------------------------------------------------------------------


def test_close_stops_workers_and_refuses_further_calls() -> None:
    before = _worker_pids()
    checker = EquivalenceChecker(workers=2, timeout_s=1.0)
    mine = _worker_pids() - before
    assert len(mine) == 2
    checker.close()
    assert not (mine & _worker_pids())
    with pytest.raises(RuntimeError, match="closed"):
        checker.equivalent([("1", "2")])
    checker.close()  # closing twice is harmless


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"workers": 0}, "workers must be >= 1"),
        ({"timeout_s": 0}, "timeout_s must be > 0"),
        ({"kill_after_s": -1.0}, "kill_after_s must be > 0"),
        ({"memory_limit_mb": 10}, "memory_limit_mb must be >= 256"),
    ],
)
def test_invalid_settings_are_rejected(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EquivalenceChecker(**kwargs)  # type: ignore[arg-type]
