"""The `math` kind: a free-form question whose answer is a short expression in `\\boxed{}`.

Checked by math-verify against the majority of the Solver's answers (R-Zero, SPICE).
"""

from __future__ import annotations

from selfplay.kinds.base import Messages, Proposal, one_shot_messages
from selfplay.kinds.tagged import read_sections
from verifiers.answers import extract_boxed, extract_math_answer

SYSTEM = "You write short, self-contained exam questions with exact answers."
FORMAT = "<question>...</question>\n<answer>\\boxed{...}</answer>"
GROUNDED = (
    "Read the text, then write one new maths question that it inspires. The question must be "
    "answerable on its own with a single number or short expression. Use exactly this format:\n"
    + FORMAT
)
UNGROUNDED = (
    "Write one new maths question, answerable with a single number or short expression. "
    "Use exactly this format:\n" + FORMAT
)
EXAMPLE_TEXT = (
    "The area of a rectangle is its length times its width. A garden that is 4 metres long "
    "and 3 metres wide has an area of 12 square metres."
)
EXAMPLE_ANSWER = (
    "<question>A rectangle is 5 metres long and 2 metres wide. What is its area in square "
    "metres?</question>\n<answer>\\boxed{10}</answer>"
)
# The tag format as a regex for constrained sampling; lengths stay inside the parser's limits
# and the default token budget.
CHALLENGER_FORMAT = (
    r"<question>[^<>]{10,400}</question>\n<answer>\\boxed\{[^<>{}\n]{1,40}\}</answer>"
)
PLACEHOLDERS = {"...", "…", "?", "answer", "x", "n"}
SOLVE = "Solve the problem. Think step by step, then give the final answer in \\boxed{}.\n\n"


class MathKind:
    name: str = "math"
    challenger_format: str | None = CHALLENGER_FORMAT

    def challenger_messages(self, document: str | None) -> Messages:
        return one_shot_messages(
            SYSTEM, GROUNDED, UNGROUNDED, EXAMPLE_TEXT, EXAMPLE_ANSWER, document
        )

    def parse_proposal(self, completion: str) -> Proposal:
        sections = read_sections(completion, required=("question", "answer"))
        if sections.rejection:
            return Proposal(self.name, rejection=sections.rejection)
        raw_answer = sections.found["answer"]
        # Lenient: a bare answer without \boxed{} is accepted; a boxed one is unwrapped.
        boxed = extract_boxed(raw_answer)
        answer = boxed.strip() if boxed is not None else raw_answer.strip().strip("$").strip()
        if not answer:
            return Proposal(self.name, rejection="empty_answer")
        if answer.strip(" .").casefold() in PLACEHOLDERS or not answer.strip(" ."):
            # Small models copy the format's "\boxed{...}" literally.
            return Proposal(self.name, rejection="placeholder_answer")
        return Proposal(self.name, question=sections.found["question"], reference_answer=answer)

    def solver_messages(self, proposal: Proposal) -> Messages:
        return [{"role": "user", "content": SOLVE + (proposal.question or "")}]

    def extract_answer(self, completion: str) -> str | None:
        return extract_math_answer(completion)
