"""Answer extraction and cheap normalisation for Solver completions.

The embedded Solver (SmolLM2-135M) writes `\\boxed{}` in only ~4% of its
answers, so extraction here is deliberately lenient, in this order:

1. the content of the last `\\boxed{...}` / `\\fbox{...}` (balanced braces);
2. an explicit answer phrase ("The final answer is X", "Answer: X"), the last one;
3. a trailing "= X" on the last line ("3 + 4 = 7");
4. the last number in the text (integers, decimals, fractions such as 3/4 or
   `\\frac{3}{4}`, negatives, thousands separators such as 1,000).

`extract_choice` does the same for multiple-choice letters. `normalize_answer`
is the cheap string normalisation applied before math-verify: two answers whose
normalised strings are equal are equal without ever calling sympy.

Nothing here imports math-verify or sympy: it runs in the host process.
"""

from __future__ import annotations

import re

__all__ = [
    "extract_boxed",
    "extract_choice",
    "extract_math_answer",
    "normalize_answer",
]

# --- patterns ---------------------------------------------------------------

# `\boxed{` / `\fbox{` (optionally `\boxed {`): the opening of a boxed answer.
_BOXED_OPEN = re.compile(r"\\(?:boxed|fbox)\s*\{")

# "final answer is X", "the answer is: X", "Answer: X", "answer = X", "the answer
# to the question is X"; X runs to the end of its sentence (a period followed by
# space/end) or of its line.
_ANSWER_PHRASE = re.compile(
    r"(?i:answer)(?:\s+(?i:to|for|of)\s+[^.\n:=]{0,60}?)?\s*(?:\*\*)?\s*"
    r"(?:(?i:is)\b\s*:?|:|=)\s*(?:\*\*)?[ \t]*"
    r"(?P<x>[^\n]+?)[ \t]*(?:\.(?=\s|$)|\n|$)"
)

# "= X" closing the last line ("3 + 4 = 7").
_TRAILING_EQUALS = re.compile(r"=\s*(?P<x>[^=\n]{1,40}?)\s*[.!]?\s*$")

# A number: a LaTeX fraction of integers, a thousands-grouped number, or a plain
# integer/decimal with an optional "/denominator". It must not follow a word
# character, a dot or a closing bracket, so "x-3" yields 3, "is -3" yields -3 and
# "v1.2.3" yields nothing past 1.2.
_NUMBER = re.compile(
    r"(?<![\w.)\]}])-?"
    r"(?:\\[dt]?frac\{\d+\}\{\d+\}"
    r"|\d{1,3}(?:,\d{3})+(?![\d,]\d)(?:\.\d+)?"
    r"|\d+(?:\.\d+)?(?:/\d+)?)"
)

# A number opening a phrase answer and followed only by words ("12 apples",
# "5, because ...") -> the number; "5 + 3" does not match.
_LEADING_NUMBER = re.compile(
    r"^-?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?(?:/\d+)?"
    r"(?=\s*[,;!]?\s+[A-Za-z]|\s*[,;.!]?\s*$)"
)

# Two consecutive alphabetic words: the phrase is prose, not an expression.
_PROSE = re.compile(r"[A-Za-z]{2,}\s+[A-Za-z]{2,}")

# --- normalisation patterns --------------------------------------------------

_MATH_DELIMITERS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))
# `\text{...}` / `\mathrm{...}` / `\mbox{...}` wrapping the whole answer.
_WHOLE_TEXT = re.compile(r"^\\(?:text|textbf|mathrm|mbox)\{(?P<x>[^{}]*)\}$")
# A unit after a number: "5 \text{ cm}", "5\mbox{ m}".
_TRAILING_UNIT = re.compile(r"(?<=[\d}])\s*\\(?:text|mbox|mathrm)\{\s*[A-Za-z][^{}]*\}$")
# LaTeX spacing and sizing commands that never change a value.
_LATEX_NOISE = re.compile(r"\\(?:(?:left|right|displaystyle)(?![A-Za-z])|[,;:! ])|~")
# Degrees: "30^\circ", "30^{\circ}", "30°".
_DEGREES = re.compile(r"\^\s*\{?\\circ\}?|°")
# A leading single-variable assignment: "x = 2", "y=-1" (not "x=1,y=2").
_LEADING_ASSIGNMENT = re.compile(r"^[A-Za-z]\s*=\s*(?=[^=]+$)")
# A whole answer that is a thousands-grouped number: "1,000", "-12,345.5".
_THOUSANDS = re.compile(r"^[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
# A decimal with trailing zeros: "2.50", "3.0", "-1.000".
_TRAILING_ZEROS = re.compile(r"^(?P<x>[-+]?\d+\.\d*?)0+$")

# --- multiple-choice patterns (built per letter set) --------------------------


def _choice_patterns(letters: str) -> tuple[re.Pattern[str], ...]:
    """Strong-to-weak patterns that name one option letter in group `c`."""
    cls = "[" + re.escape(letters) + "]"
    end = r"(?![A-Za-z0-9])"
    return (
        # \boxed{B}, \boxed{(B)}, \boxed{\text{B}}
        re.compile(r"\\(?:boxed|fbox)\s*\{\s*(?:\\text\{)?\s*\(?(?P<c>" + cls + r")\)?\s*\}?\s*\}"),
        # "answer is B", "Answer: (B)", "answer = B", "option B", "the choice is (B)"
        re.compile(
            r"(?i:answer\s*(?:\*\*)?\s*(?:is\s*:?|:|=)|(?:option|choice)(?:\s+is)?\s*:?)"
            r"\s*(?:\*\*)?\s*"
            r"\(?(?P<c>" + cls + r")\)?" + end
        ),
        # a line holding only the letter: "B", "(B)", "B.", "B)"
        re.compile(r"(?m)^\s*(?:\*\*)?\(?(?P<c>" + cls + r")[).:]?(?:\*\*)?\s*$"),
        # "(B)" or "B)" anywhere
        re.compile(r"(?<![A-Za-z0-9])\(?(?P<c>" + cls + r")\)" + end),
    )


# --- public functions ---------------------------------------------------------


def extract_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` or `\\fbox{...}`, nested braces allowed.

    Returns None when there is no boxed answer or its braces never close.
    """
    for match in reversed(list(_BOXED_OPEN.finditer(text))):
        content = _balanced_content(text, match.end())
        if content is not None:
            return content.strip()
    return None


def extract_math_answer(text: str) -> str | None:
    """The final answer of a free-form maths completion, leniently; None if none.

    Order: last boxed answer, last answer phrase, trailing "= X", last number.
    """
    boxed = extract_boxed(text)
    if boxed:
        return boxed
    phrase = _last_answer_phrase(text)
    if phrase:
        return phrase
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if lines:
        match = _TRAILING_EQUALS.search(lines[-1])
        if match and not _PROSE.search(match["x"]):
            value = _clean_phrase_value(match["x"])
            if value:
                return value
    return _last_number(text)


def extract_choice(text: str, letters: str = "ABCD") -> str | None:
    """The chosen option letter of a multiple-choice completion, or None.

    Patterns from strong to weak: `\\boxed{B}`; "Answer: B" / "option B"; a line
    holding only the letter; "(B)" / "B)". The last match of the strongest
    pattern that matches wins. A weak-pattern mention of every option letter is
    a re-listing of the options, not a choice, and gives None.
    """
    if not letters:
        return None
    for tier, pattern in enumerate(_choice_patterns(letters)):
        found = [m["c"] for m in pattern.finditer(text)]
        if not found:
            continue
        if tier == 3 and len(letters) > 1 and set(found) >= set(letters):
            return None
        return found[-1]
    return None


def normalize_answer(text: str) -> str:
    """Cheap canonical form of an extracted answer, compared before math-verify.

    Strips math delimiters (`$`, `\\(`), a whole-answer `\\boxed{}` or `\\text{}`,
    a trailing unit, `\\left`/`\\right` and spacing commands, degrees, all spaces,
    a trailing period, a leading "x =", thousands commas and trailing decimal
    zeros; `\\dfrac`/`\\tfrac` become `\\frac`. Values are never changed.
    """
    answer = _strip_math_delimiters(text.strip().rstrip(".").strip())
    boxed = extract_boxed(answer)
    if boxed is not None and answer.startswith(("\\boxed", "\\fbox")) and answer.endswith("}"):
        answer = _strip_math_delimiters(boxed)
    answer = answer.rstrip(".").strip()
    if answer.startswith("\\$"):
        answer = answer[2:]  # a currency sign: "\$5" -> "5"
    answer = _TRAILING_UNIT.sub("", answer)
    whole_text = _WHOLE_TEXT.match(answer)
    if whole_text:
        answer = whole_text["x"].strip()
    answer = _LATEX_NOISE.sub("", answer)
    answer = _DEGREES.sub("", answer)
    answer = answer.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    answer = re.sub(r"\s+", "", answer).rstrip(".")
    answer = _LEADING_ASSIGNMENT.sub("", answer)
    if _THOUSANDS.match(answer):
        answer = answer.replace(",", "")
    zeros = _TRAILING_ZEROS.match(answer)
    if zeros:
        answer = zeros["x"].rstrip(".")
    if answer.startswith("+"):
        answer = answer[1:]
    if answer.startswith("."):
        answer = "0" + answer  # ".5" -> "0.5"
    elif answer.startswith("-."):
        answer = "-0" + answer[1:]
    return answer


# --- helpers ------------------------------------------------------------------


def _balanced_content(text: str, start: int) -> str | None:
    """Text from `start` up to the brace closing the one just before it."""
    depth = 1
    for index in range(start, len(text)):
        char = text[index]
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[start:index]
    return None


def _strip_math_delimiters(answer: str) -> str:
    """Remove one pair of surrounding `$$`, `$`, `\\(`, `\\[` delimiters, repeatedly."""
    changed = True
    while changed:
        changed = False
        answer = answer.strip()
        for opening, closing in _MATH_DELIMITERS:
            long_enough = len(answer) >= len(opening) + len(closing)
            if long_enough and answer.startswith(opening) and answer.endswith(closing):
                answer = answer[len(opening) : len(answer) - len(closing)]
                changed = True
                break
    return answer.strip()


def _last_answer_phrase(text: str) -> str | None:
    """The value after the last "answer is"/"Answer:" phrase, trimmed to the value."""
    matches = list(_ANSWER_PHRASE.finditer(text))
    for match in reversed(matches):
        value = _clean_phrase_value(match["x"])
        if value:
            return value
    return None


def _clean_phrase_value(raw: str) -> str | None:
    """Trim a phrase value: "$12$ apples" -> "12", "5 + 3 = 8" -> "8", prose -> its number."""
    value = raw.strip().strip("*").strip()
    boxed = extract_boxed(value)
    if boxed:
        return boxed
    value = _strip_math_delimiters(value.rstrip(".,;!").strip())
    if value.startswith("$") and value.count("$") >= 2:
        # "$12$ apples": keep the first inline-math span.
        value = value.split("$")[1].strip()
    if "=" in value and "," not in value:
        # "5 + 3 = 8" -> "8"; a system such as "x=1, y=2" is kept whole.
        value = value.rsplit("=", 1)[1].strip()
    leading = _LEADING_NUMBER.match(value)
    if leading:
        return leading.group(0)
    if _PROSE.search(value):
        # A sentence such as "that Tom has 5 apples": its number is the answer.
        return _last_number(value) or (value if len(value) <= 40 else None)
    return value or None


def _last_number(text: str) -> str | None:
    """The last number in the text, as written (minus sign kept, spaces dropped)."""
    matches = list(_NUMBER.finditer(text))
    if not matches:
        return None
    return matches[-1].group(0).replace(" ", "")
