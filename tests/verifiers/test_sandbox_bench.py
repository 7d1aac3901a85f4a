"""A small run of the executor benchmark (`python -m bench.executor` runs the full 1,000)."""

from __future__ import annotations

from bench.executor import main, measure_executor, mixed_snippets


def test_snippets_are_deterministic_and_mixed() -> None:
    snippets = mixed_snippets(30)
    assert snippets == mixed_snippets(30)
    assert len(set(snippets)) == 30 and sum("def " in s for s in snippets) >= 3


def test_the_pool_beats_a_fresh_interpreter_per_snippet() -> None:
    # 40 snippets keep this to a few seconds; the 10x figure comes from the full benchmark,
    # here a loose bound that a loaded 2-core CI box still meets.
    bench = measure_executor(snippet_count=40, workers=2)
    assert bench.pool_failures == 0, bench
    assert bench.pool_vs_subprocess > 3.0, bench.report()
    assert bench.exec_per_s > bench.pool_per_s, bench.report()


def test_the_command_prints_every_figure(capsys: object) -> None:
    main(["--snippets", "10", "--workers", "1"])
    printed = capsys.readouterr().out  # type: ignore[attr-defined]
    for label in (
        "sandbox pool:",
        "subprocess per snippet:",
        "in-process exec:",
        "pool / subprocess:",
    ):
        assert label in printed, printed
