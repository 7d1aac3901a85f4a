import pytest

from selfplay.kinds import get_kind
from selfplay.kinds.base import Proposal

MATH_OK = "<question>What is 6 times 7?</question>\n<answer>\\boxed{42}</answer>"
MCQ_OK = (
    "<question>Which number is prime?</question>\n<options>\nA) 4\nB) 6\nC) 7\nD) 9\n"
    "</options>\n<answer>C</answer>"
)


def test_math_proposal_parses_and_unwraps_the_box():
    proposal = get_kind("math").parse_proposal(MATH_OK)
    assert proposal == Proposal("math", question="What is 6 times 7?", reference_answer="42")


def test_math_accepts_an_unclosed_question_and_a_bare_answer():
    proposal = get_kind("math").parse_proposal("<question>What is 1+1?\n<answer>2</answer>")
    assert proposal.valid and proposal.question == "What is 1+1?"
    assert proposal.reference_answer == "2"


@pytest.mark.parametrize(
    ("completion", "reason"),
    [
        ("Sure! What is 2+2? The answer is 4.", "no_tags"),
        ("<question>What is 2+2?</question>", "missing_answer"),
        ("<question>   </question><answer>4</answer>", "empty_question"),
        ("<question>What is 2+2?</question><answer></answer>", "empty_answer"),
        (
            "<question>a <question>b</question></question><answer>1</answer>",
            "repeated_question_tag",
        ),
        ("<question>" + "x" * 1001 + "</question><answer>1</answer>", "question_too_long"),
        ("<question>q?</question><answer>" + "9" * 101 + "</answer>", "answer_too_long"),
        ("<question>q?</question><answer>\\boxed{}</answer>", "empty_answer"),
    ],
)
def test_math_rejections_are_named(completion, reason):
    proposal = get_kind("math").parse_proposal(completion)
    assert not proposal.valid
    assert proposal.rejection == reason


def test_mcq_proposal_parses_options_and_letter():
    proposal = get_kind("mcq").parse_proposal(MCQ_OK)
    assert proposal.valid
    assert proposal.options == ("4", "6", "7", "9")
    assert proposal.reference_answer == "C"


@pytest.mark.parametrize(
    ("options", "answer", "reason"),
    [
        ("A) 4\nB) 6\nC) 7", "C", "options_malformed"),
        ("A) 4\nB) 6\nB) 7\nD) 9", "B", "options_repeated_letter"),
        ("A) 4\nB) 4\nC) 7\nD) 9", "C", "options_not_distinct"),
        ("A) 4\nB) 6\nC) 7\nD) 9", "seven", "answer_not_a_letter"),
    ],
)
def test_mcq_rejections_are_named(options, answer, reason):
    completion = (
        f"<question>Which?</question><options>\n{options}\n</options><answer>{answer}</answer>"
    )
    assert get_kind("mcq").parse_proposal(completion).rejection == reason


def test_solver_never_sees_the_document_and_gets_the_options():
    document = "SECRET DOCUMENT TEXT"
    mcq = get_kind("mcq")
    assert document in mcq.challenger_messages(document)[-1]["content"]
    solver = mcq.solver_messages(mcq.parse_proposal(MCQ_OK))
    text = " ".join(m["content"] for m in solver)
    assert document not in text
    assert "C) 7" in text and "Which number is prime?" in text


def test_ungrounded_prompt_has_no_text_section():
    messages = get_kind("math").challenger_messages(None)
    assert "Text:" not in messages[-1]["content"]


def test_answer_extraction_per_kind():
    assert get_kind("math").extract_answer("so the total is \\boxed{12}.") == "12"
    assert get_kind("mcq").extract_answer("The right one is C.\nAnswer: C") == "C"


def test_unknown_kind_lists_the_choices():
    with pytest.raises(
        ValueError,
        match=r"unknown task kind 'essay'; choose from "
        r"\['code_f', 'code_i', 'code_o', 'math', 'mcq'\]",
    ):
        get_kind("essay")
