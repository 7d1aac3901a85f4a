"""The `mcq` kind: a multiple-choice question grounded in a document, four options, one letter.

Checked by exact letter match; the Solver never sees the document.
"""

from __future__ import annotations

import re

from selfplay.kinds.base import Messages, Proposal, one_shot_messages
from selfplay.kinds.tagged import read_sections
from verifiers.answers import extract_choice

LETTERS = "ABCD"
SYSTEM = "You write short, self-contained multiple-choice exam questions."
FORMAT = (
    "<question>...</question>\n<options>\nA) ...\nB) ...\nC) ...\nD) ...\n</options>\n"
    "<answer>letter</answer>"
)
GROUNDED = (
    "Read the text, then write one multiple-choice question about it with four options A-D, "
    "exactly one of them correct. Use exactly this format:\n" + FORMAT
)
UNGROUNDED = (
    "Write one multiple-choice question about science, maths or programming with four options "
    "A-D, exactly one of them correct. Use exactly this format:\n" + FORMAT
)
EXAMPLE_TEXT = (
    "The area of a rectangle is its length times its width. A garden that is 4 metres long "
    "and 3 metres wide has an area of 12 square metres."
)
EXAMPLE_ANSWER = (
    "<question>What is the area of a rectangle 4 metres long and 3 metres wide?</question>\n"
    "<options>\nA) 7 square metres\nB) 12 square metres\nC) 14 square metres\n"
    "D) 43 square metres\n</options>\n<answer>B</answer>"
)
SOLVE = "Answer the multiple-choice question. End with 'Answer: X' where X is A, B, C or D.\n\n"
CHALLENGER_FORMAT = (
    r"<question>[^<>]{10,400}</question>\n<options>\n"
    r"A\) [^<>\n]{1,100}\nB\) [^<>\n]{1,100}\nC\) [^<>\n]{1,100}\nD\) [^<>\n]{1,100}\n"
    r"</options>\n<answer>[ABCD]</answer>"
)
OPTION_LINE = re.compile(r"^\s*\(?([A-Da-d])[).:]\s*(.+?)\s*$")


class McqKind:
    name: str = "mcq"
    challenger_format: str | None = CHALLENGER_FORMAT

    def challenger_messages(self, document: str | None) -> Messages:
        return one_shot_messages(
            SYSTEM, GROUNDED, UNGROUNDED, EXAMPLE_TEXT, EXAMPLE_ANSWER, document
        )

    def parse_proposal(self, completion: str) -> Proposal:
        sections = read_sections(completion, required=("question", "options", "answer"))
        if sections.rejection:
            return Proposal(self.name, rejection=sections.rejection)
        options, rejection = parse_options(sections.found["options"])
        if rejection:
            return Proposal(self.name, rejection=rejection)
        letter = extract_choice(sections.found["answer"], LETTERS)
        if letter is None:
            return Proposal(self.name, rejection="answer_not_a_letter")
        return Proposal(
            self.name,
            question=sections.found["question"],
            reference_answer=letter,
            options=tuple(options),
        )

    def solver_messages(self, proposal: Proposal) -> Messages:
        lines = zip(LETTERS, proposal.options or (), strict=False)
        options = "\n".join(f"{letter}) {text}" for letter, text in lines)
        return [{"role": "user", "content": f"{SOLVE}{proposal.question}\n{options}"}]

    def extract_answer(self, completion: str) -> str | None:
        return extract_choice(completion, LETTERS)


def parse_options(block: str) -> tuple[list[str], str | None]:
    """Four lines `A) ...` to `D) ...`, in order, non-empty and distinct."""
    found: dict[str, str] = {}
    for line in block.splitlines():
        match = OPTION_LINE.match(line)
        if match:
            letter = match.group(1).upper()
            if letter in found:
                return [], "options_repeated_letter"
            found[letter] = match.group(2)
    if sorted(found) != list(LETTERS):
        return [], "options_malformed"
    options = [found[letter] for letter in LETTERS]
    if len({o.casefold() for o in options}) < len(options):
        return [], "options_not_distinct"
    return options, None
