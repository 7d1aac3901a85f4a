"""Answer extraction and normalisation on literal completions, SmolLM-style included."""

from __future__ import annotations

import pytest

from verifiers.answers import (
    extract_boxed,
    extract_choice,
    extract_math_answer,
    normalize_answer,
)

# --- extract_boxed ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"so \boxed{42}", "42"),
        (r"first \boxed{1} then \boxed{2}", "2"),  # the last one wins
        (r"\boxed{\frac{1}{\sqrt{2}}}", r"\frac{1}{\sqrt{2}}"),  # nested braces
        (r"\boxed{ {a}{b} }.", "{a}{b}"),
        (r"\fbox{7}", "7"),
        (r"\boxed {x+1}", "x+1"),
        (r"\boxed{3} and an unclosed \boxed{4", "3"),  # unclosed last: take the closed one
        (r"\boxed{unclosed", None),
        ("no box here, 12", None),
    ],
)
def test_extract_boxed(text: str, expected: str | None) -> None:
    assert extract_boxed(text) == expected


# --- extract_math_answer -------------------------------------------------------------

SMOLLM_RAMBLE = """To solve this problem, we need to find the total number of apples.

Tom has 3 apples. Mary gives him 4 more apples. So we add 3 and 4.

3 + 4 = 7

Therefore, Tom has 7 apples in total. I hope this helps! Let me know if you have
any other questions about apples or 2 other fruits"""

SMOLLM_ANSWER_PHRASE = """Let's think step by step. First, 12 * 3 = 36.
Then 36 - 6 = 30.
The answer is 30 apples. Good job, 5 stars!"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"Thus $x = \boxed{\frac{3}{4}}$. The answer is 5.", r"\frac{3}{4}"),  # boxed first
        ("The final answer is $42$. I hope it is correct.", "42"),
        ("**Answer:** 42", "42"),
        ("Answer:\n17", "17"),
        ("The answer to the question is 12 apples.", "12"),
        ("The answer is 5, because 2 + 3 = 5", "5"),
        ("The answer is 5 + 3 = 8", "8"),
        ("Answer: x = 5", "5"),
        ("The answer is that Tom has 5 apples.", "5"),
        ("The answer is yes.", "yes"),
        ("the answer is x=1, y=2", "x=1, y=2"),
        ("2 + 3 = 5", "5"),
        ("First 2 + 2 = 4\nthen we add 3 = 7.", "7"),
        ("So Tom has 1,000 dollars.", "1,000"),
        ("It is -3", "-3"),
        ("compute x-3", "3"),  # a minus after a letter is subtraction, not a sign
        ("we get 3/4 of the pie.", "3/4"),
        (r"half is \frac{1}{2}", r"\frac{1}{2}"),
        ("the value is 3.50.", "3.50"),
        ("1,2,3", "3"),
        ("$-12,345.5$", "-12,345.5"),
        ("version v1.2.3", None),
        ("I don't know how to solve this.", None),
        ("", None),
        (SMOLLM_RAMBLE, "2"),  # lenient: the last number, even a wrong one
        (SMOLLM_ANSWER_PHRASE, "30"),
    ],
)
def test_extract_math_answer(text: str, expected: str | None) -> None:
    assert extract_math_answer(text) == expected


# --- extract_choice ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"\boxed{B}", "B"),
        (r"\boxed{\text{C}}", "C"),
        (r"(A) is wrong. \boxed{(D)}", "D"),  # boxed beats parentheses
        ("The answer is (C).", "C"),
        ("answer: A", "A"),
        ("Option D", "D"),
        ("Option A is wrong, so the choice is B.", "B"),  # the last one
        ("I think B) is right", "B"),
        ("The options were (A) and (B); I pick (C)", "C"),
        ("B", "B"),
        ("Let me think.\n(C)\n", "C"),
        ("(A) 3 (B) 4 (C) 5 (D) 6", None),  # every letter: a re-listing, not a choice
        ("A farmer has 3 cows", None),  # an article, not an option
        ("The answer is Bob", None),
        ("The answer is E", None),  # not one of the letters
        ("The answer is (E)", "E"),
    ],
)
def test_extract_choice(text: str, expected: str | None) -> None:
    letters = "ABCDE" if text.endswith("(E)") else "ABCD"
    assert extract_choice(text, letters=letters) == expected


def test_extract_choice_without_letters_is_none() -> None:
    assert extract_choice("The answer is A", letters="") is None


# --- normalize_answer ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$1,000$", "1000"),
        (r"\boxed{5}", "5"),
        (r"$\boxed{5}$", "5"),
        ("x = 2", "2"),
        ("x=1,y=2", "x=1,y=2"),  # a system keeps its variables
        ("2.50", "2.5"),
        ("3.0", "3"),
        ("-1.000", "-1"),
        (r"5 \text{ cm}", "5"),
        (r"\text{Paris}", "Paris"),
        (r"\left(1, 2\right)", "(1,2)"),
        (r"\leftarrow", r"\leftarrow"),  # only the sizing command is dropped
        (r"30^\circ", "30"),
        ("30°", "30"),
        (".5", "0.5"),
        ("-.5", "-0.5"),
        ("+7", "7"),
        ("42.", "42"),
        (r"\dfrac{1}{2}", r"\frac{1}{2}"),
        (r"\$5", "5"),
        (r"\(x^2 + 1\)", "x^2+1"),
        ("1,2", "1,2"),  # not a thousands separator
        ("  ", ""),
    ],
)
def test_normalize_answer(text: str, expected: str) -> None:
    assert normalize_answer(text) == expected


def test_normalize_answer_is_idempotent() -> None:
    for text in ["$1,000$", r"\boxed{x = 2.50}", r"\left( \dfrac{1}{2} \right)"]:
        once = normalize_answer(text)
        assert normalize_answer(once) == once
