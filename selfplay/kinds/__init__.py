"""Task kinds, by name: each module owns its Challenger prompt, parser and Solver prompt."""

from __future__ import annotations

from selfplay.kinds.base import Proposal, TaskKind
from selfplay.kinds.code import CODE_F, CODE_I, CODE_O, KINDS_BY_NAME
from selfplay.kinds.math import MathKind
from selfplay.kinds.mcq import McqKind

KINDS: dict[str, TaskKind] = {
    kind.name: kind for kind in (MathKind(), McqKind(), CODE_O, CODE_I, CODE_F)
}
# Kinds whose tasks the executor validates and whose Solver answers it grades.
EXECUTED_KINDS = frozenset(KINDS_BY_NAME)


def get_kind(name: str) -> TaskKind:
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(f"unknown task kind {name!r}; choose from {sorted(KINDS)}") from None


__all__ = ["EXECUTED_KINDS", "KINDS", "Proposal", "TaskKind", "get_kind"]
