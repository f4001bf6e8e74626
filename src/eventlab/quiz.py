"""Predict, then run: a prediction prompt before a reveal cell, with feedback on the answer.

Introduced in lesson 00; every lesson uses it right before the cell that reveals
what happened. Usage, in two cells::

    p = quiz.predict(
        "03-balance",
        "Ten deposits of 50; the consumer is killed between effect and XACK, then "
        "restarted. What balance do you expect after the restart?",
        unit="EUR",
    )
    # ... the cells that run the experiment ...
    quiz.reveal(p, actual=balance(), why="The restart re-read its pending entry ...")

``predict`` shows the question and an input (multiple choice with
``choices=[...]``, else a number, optionally with a ``unit`` and an absolute
``tolerance``). ``reveal`` shows what happened and, if the learner answered,
whether they were right, with the why. A prompt nobody answered never blocks
or fails a Run All (nbval runs the lessons unattended): the reveal then just
says what happened. The feedback follows the input, so a learner who answers
after running the reveal still gets a verdict. Tests answer from Python:
``p.input.value = "550"`` then ``quiz.reveal(...).text``.

Why not ``jupyterquiz``: it renders a quiz in JavaScript whose correct answer
must be known when the question is written; the learner's answer stays in the
browser (its authors note that JupyterLab gives JavaScript no way back to the
kernel), so a test cannot answer it from Python, and the answer here is the
number the broker produces later in the notebook. A few ipywidgets (already a
course dependency) do both, and render in JupyterLab, Notebook 7 and VS Code.
"""

from __future__ import annotations

import html
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import ipywidgets as widgets
from IPython.display import display

from eventlab._errors import EventlabError

__all__ = ["Prediction", "QuizError", "Reveal", "Verdict", "predict", "reveal"]


class QuizError(EventlabError):
    """A prediction prompt or its reveal is written wrongly (an author's mistake)."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a reveal says about one prediction.

    Attributes:
        key: The prompt's key (``"03-balance"``).
        answer: The learner's answer (a choice, or a number), or ``None`` if unanswered.
        actual: What happened.
        correct: ``True``/``False`` when answered, ``None`` when not.
        text: The feedback as plain text.
    """

    key: str
    answer: str | float | None
    actual: str | float
    correct: bool | None
    text: str


class Prediction:
    """One prediction prompt: the question and the input the learner answers in.

    Attributes:
        key: A unique name, lesson first (``"03-balance"``).
        question: The question as shown.
        choices: The options of a multiple-choice prompt, or ``None`` for a number.
        unit: The unit of a numeric answer (``"EUR"``, ``"entries"``), or ``""``.
        tolerance: How far (absolute) a numeric answer may be from the actual and count as right.
        input: The ipywidgets input (``RadioButtons`` or ``Text``); set ``.value`` to answer.
        widget: The whole prompt as displayed.
    """

    def __init__(
        self,
        key: str,
        question: str,
        *,
        choices: Sequence[str] | None = None,
        unit: str = "",
        tolerance: float = 0.0,
    ) -> None:
        """Build the prompt; :func:`predict` builds and displays it."""
        if choices is not None and len(choices) < 2:  # noqa: PLR2004 - a choice needs two options
            raise QuizError(f"prompt {key!r} has fewer than two choices", fix="give two or more")
        self.key = key
        self.question = question
        self.choices = tuple(choices) if choices is not None else None
        self.unit = unit
        self.tolerance = tolerance
        self.input: widgets.RadioButtons | widgets.Text
        if self.choices is not None:
            self.input = widgets.RadioButtons(
                options=self.choices, value=None, layout=widgets.Layout(width="auto")
            )
        else:
            hint = f"a number, in {unit}" if unit else "a number"
            self.input = widgets.Text(
                placeholder=hint, description="Your answer:", style={"description_width": "initial"}
            )
        label = widgets.HTML(f"<b>Predict</b> ({html.escape(key)}): {html.escape(question)}")
        self.widget = widgets.VBox([label, self.input], layout=widgets.Layout(margin="4px 0"))
        self.widget.add_class("eventlab-prediction")

    def __repr__(self) -> str:
        """Show the key and the current answer."""
        return f"<Prediction {self.key} answer={self.answer!r}>"

    @property
    def answer(self) -> str | float | None:
        """The answer now: a choice, a number, or ``None`` (unanswered, or not a number)."""
        value = self.input.value
        if self.choices is not None:
            return str(value) if value is not None else None
        text = str(value or "").strip().replace(",", "").removesuffix(self.unit).strip()
        if not text:
            return None
        try:
            number = float(text)
        except ValueError:
            return None
        return number if math.isfinite(number) else None

    def verdict(self, *, actual: str | float, why: str) -> Verdict:
        """Judge the current answer against ``actual``, with the reason ``why``."""
        if self.choices is not None and actual not in self.choices:
            raise QuizError(
                f"prompt {self.key!r}: {actual!r} is not one of its choices",
                fix="reveal one of the choices given to predict()",
            )
        shown = self._show(actual)
        answer = self.answer
        if answer is None:
            unanswered = self.input.value not in {None, ""}
            note = " (your answer is not a number)" if unanswered else " You did not predict."
            return Verdict(self.key, None, actual, None, f"It was {shown}.{note} Why: {why}")
        if self.choices is not None:
            correct = answer == actual
        else:
            correct = abs(float(answer) - float(actual)) <= self.tolerance
        if correct:
            text = f"Right: you predicted {self._show(answer)}, and it was {shown}. Why: {why}"
        else:
            text = f"Not quite: you predicted {self._show(answer)}; it was {shown}. Why: {why}"
        return Verdict(self.key, answer, actual, correct, text)

    def _show(self, value: str | float) -> str:
        if isinstance(value, str):
            return value
        number = f"{value:g}" if isinstance(value, float) else str(value)
        return f"{number} {self.unit}".strip()


class Reveal:
    """The feedback shown by :func:`reveal`; it follows the prediction's input.

    Attributes:
        prediction: The prompt it judges.
        actual: What happened.
        why: The explanation shown with it.
        widget: The feedback as displayed (an ``ipywidgets.HTML``).
    """

    def __init__(self, prediction: Prediction, *, actual: str | float, why: str) -> None:
        """Judge now and keep judging when the answer changes; :func:`reveal` displays it."""
        self.prediction = prediction
        self.actual = actual
        self.why = why
        self.widget = widgets.HTML()
        self.widget.add_class("eventlab-reveal")
        self._render()
        prediction.input.observe(lambda _change: self._render(), names="value")

    def __repr__(self) -> str:
        """The feedback as text (what a console or a log shows)."""
        return self.text

    @property
    def verdict(self) -> Verdict:
        """The verdict on the prediction's current answer."""
        return self.prediction.verdict(actual=self.actual, why=self.why)

    @property
    def text(self) -> str:
        """The feedback as plain text."""
        return self.verdict.text

    def _render(self) -> None:
        verdict = self.verdict
        colour = {True: "#1a7f37", False: "#b35900", None: "#444"}[verdict.correct]
        self.widget.value = f'<div style="color:{colour}">{html.escape(verdict.text)}</div>'


def predict(
    key: str,
    question: str,
    *,
    choices: Sequence[str] | None = None,
    unit: str = "",
    tolerance: float = 0.0,
) -> Prediction:
    """Show a prediction prompt and return it; :func:`reveal` judges it later.

    Args:
        key: A unique name, lesson first (``"03-balance"``).
        question: What to predict, with the numbers the learner needs.
        choices: Options for a multiple-choice answer; omit for a number.
        unit: The unit of a numeric answer (``"EUR"``, ``"entries"``, ``"s"``).
        tolerance: Absolute distance from the actual value still counted as right.

    Raises:
        QuizError: Fewer than two choices.
    """
    prediction = Prediction(key, question, choices=choices, unit=unit, tolerance=tolerance)
    display(prediction.widget)  # type: ignore[no-untyped-call]
    return prediction


def reveal(prediction: Prediction, *, actual: str | float, why: str) -> Reveal:
    """Show what happened and, if the learner answered, whether they were right and why.

    Never raises because of the learner's answer (or its absence), so a Run All
    with every prompt unanswered passes.

    Args:
        prediction: What :func:`predict` returned.
        actual: What happened: one of the choices, or the measured number.
        why: One or two sentences on why it came out that way.

    Raises:
        QuizError: ``actual`` is not one of a multiple-choice prompt's choices.
    """
    if isinstance(actual, bool) or not isinstance(actual, str | numbers.Real):
        raise QuizError(
            f"prompt {prediction.key!r}: reveal a choice or a number, not {type(actual).__name__}",
            fix="pass actual=<one of the choices> or a number",
        )
    if not isinstance(actual, str):
        actual = float(actual)  # numpy and pandas numbers too
    shown = Reveal(prediction, actual=actual, why=why)
    display(shown.widget)  # type: ignore[no-untyped-call]
    return shown
