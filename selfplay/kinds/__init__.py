"""Task kinds, by name: each module owns its Challenger prompt, parser and Solver prompt."""

from __future__ import annotations

from selfplay.kinds.base import Proposal, TaskKind
from selfplay.kinds.math import MathKind
from selfplay.kinds.mcq import McqKind

KINDS: dict[str, TaskKind] = {kind.name: kind for kind in (MathKind(), McqKind())}


def get_kind(name: str) -> TaskKind:
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(f"unknown task kind {name!r}; choose from {sorted(KINDS)}") from None


__all__ = ["KINDS", "Proposal", "TaskKind", "get_kind"]
