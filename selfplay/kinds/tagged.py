"""Reading `<tag>...</tag>` sections out of a Challenger completion, leniently but never silently.

Small models often forget a closing tag or stop early; an unclosed section runs to the next
known opening tag or the end. What cannot be read is a named rejection, stored with the task.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

TAGS = ("question", "options", "answer", "program")
MAX_QUESTION_CHARS = 1000
MAX_ANSWER_CHARS = 100


@dataclass(frozen=True)
class Sections:
    found: dict[str, str]
    rejection: str | None = None


def read_sections(completion: str, required: tuple[str, ...]) -> Sections:
    """The text of each tag in `required` (and any other known tag present)."""
    opened = {tag: len(re.findall(rf"<{tag}>", completion, re.IGNORECASE)) for tag in TAGS}
    if not any(opened.values()):
        return Sections({}, "no_tags")
    for tag, count in opened.items():
        if count > 1:
            # `<question>..<question>..` — nested or repeated sections are ambiguous.
            return Sections({}, f"repeated_{tag}_tag")
    found: dict[str, str] = {}
    for tag, count in opened.items():
        if count:
            found[tag] = _section_text(completion, tag).strip()
    for tag in required:
        if tag not in found:
            return Sections(found, f"missing_{tag}")
        if not found[tag]:
            return Sections(found, f"empty_{tag}")
    if len(found.get("question", "")) > MAX_QUESTION_CHARS:
        return Sections(found, "question_too_long")
    if len(found.get("answer", "")) > MAX_ANSWER_CHARS:
        return Sections(found, "answer_too_long")
    return Sections(found)


def _section_text(completion: str, tag: str) -> str:
    start = re.search(rf"<{tag}>", completion, re.IGNORECASE)
    assert start is not None
    rest = completion[start.end() :]
    # The section ends at its closing tag or at the next opening/closing tag of any kind.
    end = re.search(r"</?(?:{})>".format("|".join(TAGS)), rest, re.IGNORECASE)
    return rest[: end.start()] if end else rest
