"""Prediction prompts: answered from Python, judged right or wrong, never failing unanswered."""

from __future__ import annotations

import numpy as np
import pytest

from eventlab import quiz


def test_numeric_prediction_right_and_wrong():
    """A numeric answer within the tolerance is right, outside it wrong; the feedback says why."""
    p = quiz.predict("99-balance", "What balance?", unit="EUR", tolerance=0)
    p.input.value = "550 EUR"
    shown = quiz.reveal(p, actual=np.int64(550), why="the effect ran twice")
    assert shown.verdict.correct is True
    assert shown.text.startswith("Right: you predicted 550 EUR")
    assert "the effect ran twice" in shown.text
    p.input.value = "500"
    assert shown.verdict.correct is False  # the feedback follows the input
    assert "you predicted 500 EUR; it was 550 EUR" in shown.text
    assert "it was 550 EUR" in shown.widget.value


def test_choice_prediction():
    """A multiple-choice answer is right only if it is the choice that happened."""
    p = quiz.predict("99-order", "Which comes first?", choices=["urgent", "routine"])
    p.input.value = "routine"
    assert quiz.reveal(p, actual="urgent", why="priority").verdict.correct is False
    p.input.value = "urgent"
    assert quiz.reveal(p, actual="urgent", why="priority").verdict.correct is True


def test_unanswered_prompt_reveals_without_a_verdict():
    """Nobody answered (nbval's Run All): the reveal says what happened and judges nothing."""
    p = quiz.predict("99-lag", "How much lag?", unit="entries")
    shown = quiz.reveal(p, actual=75, why="the producer is faster")
    assert shown.verdict.correct is None
    assert shown.text == "It was 75 entries. You did not predict. Why: the producer is faster"
    p.input.value = "lots"
    assert "not a number" in shown.text


def test_author_mistakes_are_refused():
    """A choice reveal outside the choices, or one choice only, is an author's error."""
    p = quiz.predict("99-x", "?", choices=["a", "b"])
    with pytest.raises(quiz.QuizError, match="not one of its choices"):
        quiz.reveal(p, actual="c", why="")
    with pytest.raises(quiz.QuizError, match="two"):
        quiz.predict("99-y", "?", choices=["a"])
