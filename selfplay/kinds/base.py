"""What every task kind provides: Challenger prompt, parser, Solver prompt, answer extraction.

Each kind (math, mcq, code_o/code_i/code_f) lives in its own module and owns its prompts,
its parser and its answer check, so adding a kind touches one file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class Proposal:
    """One parsed Challenger completion: a valid task, or the reason it was rejected."""

    kind: str
    question: str | None = None
    reference_answer: str | None = None
    options: tuple[str, ...] | None = None
    # Kind-specific parts (a program, its inputs, held-out I/O pairs...), JSON-serialisable.
    payload: dict[str, Any] = field(default_factory=dict)
    rejection: str | None = None

    @property
    def valid(self) -> bool:
        return self.rejection is None


class TaskKind(Protocol):
    name: str
    # A regular expression for the Challenger's completion, used to constrain sampling
    # (vLLM structured outputs) when `generate.constrained_format` is on; None: no constraint.
    challenger_format: str | None

    def challenger_messages(self, document: str | None) -> Messages:
        """Chat messages asking the Challenger for one task, grounded in `document` if given."""
        ...

    def parse_proposal(self, completion: str) -> Proposal:
        """Parse the Challenger's completion; never raises, records why it was rejected."""
        ...

    def solver_messages(self, proposal: Proposal) -> Messages:
        """Chat messages asking the Solver to answer a valid proposal (without the document)."""
        ...

    def extract_answer(self, completion: str) -> str | None:
        """The Solver's final answer in the completion, or None when it gave none."""
        ...


def one_shot_messages(
    system: str,
    grounded: str,
    ungrounded: str,
    example_text: str,
    example_answer: str,
    document: str | None,
) -> Messages:
    """A Challenger prompt with one worked example turn: a 135M model copies a format it has
    seen far more reliably than one it is only told about."""
    if document is None:
        example_user, user = ungrounded, ungrounded
    else:
        example_user = f"{grounded}\n\nText:\n{example_text}"
        user = f"{grounded}\n\nText:\n{document}"
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": example_user},
        {"role": "assistant", "content": example_answer},
        {"role": "user", "content": user},
    ]
