"""Try-it exercises: the learner completes code in a cell, a check cell runs it on the broker.

Introduced in lesson 00; every lesson has at least one. Usage, in two cells::

    # TRY IT 03-withdrawals: process
    def process(client, stream, group, entry_id, event):
        raise NotImplementedError  # the learner's code replaces this line

    exercises.check("03-withdrawals", process, lesson=lesson)

:func:`check` runs the exercise's check against the real broker (under the
lesson's own keys) and prints one line of specific feedback ("passed", or what
went wrong and what to change). A blank exercise (still ``raise
NotImplementedError``) prints "not done yet" with the first hint and never
raises, so a Run All with every exercise blank passes under nbval. An error in
the learner's code is reported, not raised. ``check`` returns a
:class:`Feedback` (``.passed``, ``.status``, ``.message``).

Adding an exercise (one source for the reference answer):

1. Write the cell, with its reference answer between ``# BEGIN SOLUTION`` and
   ``# END SOLUTION`` (the labs' markers), in ``solutions/lessons/lessonNN.py``
   under a header line ``# TRY IT <id>: <name>`` (``<name>`` is what the check
   cell passes to :func:`check`). Each ``# TRY IT`` header starts a new cell.
2. Write its check in ``eventlab/exercises/_lessonNN.py``: a function decorated
   with :func:`exercise` that gets the learner's answer and the lesson, returns
   ``None`` when it passes or a one-line message saying what is wrong and what to
   change; it lets ``NotImplementedError`` from a blank answer propagate.
   Modules named ``_lesson*.py`` here are found without registering them.
3. Run ``python scripts/tryit.py`` to write the blank cells (markers replaced by
   ``raise NotImplementedError``) into the lessons; ``tests/test_exercises.py``
   fails when a lesson's cell differs from its source, when a reference answer
   fails its check, or when a blank does not get its first hint.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib
import pkgutil
import re
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import redis

from eventlab._errors import EventlabError
from eventlab._show import show
from eventlab.course import Lesson
from eventlab.labs import strip_solutions

__all__ = [
    "EXERCISES",
    "CrashingClient",
    "Exercise",
    "ExerciseError",
    "Feedback",
    "Section",
    "SimulatedCrash",
    "blank",
    "check",
    "exercise",
    "fresh_key",
    "get",
    "run_async",
    "sections",
]

HEADER = re.compile(
    r"^# TRY IT (?P<id>\d\d[a-z]?-[a-z0-9-]+): (?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*$"
)
"""The first line of a try-it cell: ``# TRY IT <id>: <name of the answer>``."""

Status = Literal["passed", "wrong", "not done"]
T = TypeVar("T")


class ExerciseError(EventlabError):
    """An exercise id is unknown or its source is malformed (an author's mistake)."""


class SimulatedCrash(Exception):  # noqa: N818 - it is a crash, not an error the learner handles
    """Raised by :class:`CrashingClient` instead of sending the command it crashes at."""


@dataclass(frozen=True, slots=True)
class Exercise:
    """One try-it exercise and its check.

    Attributes:
        id: Lesson first (``"03-withdrawals"``).
        title: What the learner builds, in a few words.
        hints: Hints in the order a learner needs them; the first is shown on a blank.
        run: The check: ``run(answer, lesson)`` returns ``None`` (passed) or what is wrong.
    """

    id: str
    title: str
    hints: tuple[str, ...]
    run: Callable[[Any, Lesson], str | None]


@dataclass(frozen=True, slots=True)
class Feedback:
    """What :func:`check` found.

    Attributes:
        id: The exercise id.
        status: ``"passed"``, ``"wrong"`` or ``"not done"``.
        message: One line for the learner (what happened and what to change).
    """

    id: str
    status: Status
    message: str

    @property
    def passed(self) -> bool:
        """Whether the answer passed its check."""
        return self.status == "passed"

    def __str__(self) -> str:
        """``[passed] 03-withdrawals: …``."""
        return f"[{self.status}] {self.id}: {self.message}"


EXERCISES: dict[str, Exercise] = {}
"""Every registered exercise by id (filled by the ``_lesson*`` modules; see :func:`get`)."""


def exercise(
    exercise_id: str, *, title: str, hints: tuple[str, ...]
) -> Callable[[Callable[[Any, Lesson], str | None]], Callable[[Any, Lesson], str | None]]:
    """Register the decorated function as the check of ``exercise_id``."""
    if not hints:
        raise ExerciseError(f"exercise {exercise_id!r} has no hint", fix="give at least one hint")

    def register(run: Callable[[Any, Lesson], str | None]) -> Callable[[Any, Lesson], str | None]:
        if exercise_id in EXERCISES:
            raise ExerciseError(f"exercise {exercise_id!r} registered twice", fix="rename one")
        EXERCISES[exercise_id] = Exercise(exercise_id, title, hints, run)
        return run

    return register


_loaded = False


def _load() -> None:
    global _loaded  # noqa: PLW0603 - load the lesson modules once, on first use
    if _loaded:
        return
    for module in pkgutil.iter_modules(__path__):
        if module.name.startswith("_lesson"):
            importlib.import_module(f"{__name__}.{module.name}")
    _loaded = True


def get(exercise_id: str) -> Exercise:
    """Return the exercise ``exercise_id``.

    Raises:
        ExerciseError: No such exercise.
    """
    _load()
    try:
        return EXERCISES[exercise_id]
    except KeyError:
        known = ", ".join(sorted(EXERCISES))
        raise ExerciseError(f"no exercise {exercise_id!r}", fix=f"use one of: {known}") from None


def judge(exercise_id: str, answer: Any, *, lesson: Lesson) -> Feedback:
    """Run the check of ``exercise_id`` on ``answer`` and return the feedback (prints nothing)."""
    found = get(exercise_id)
    try:
        problem = found.run(answer, lesson)
    except NotImplementedError:
        return Feedback(exercise_id, "not done", f"not done yet. Hint: {found.hints[0]}")
    except SimulatedCrash as crash:
        message = f"the simulated crash escaped the check ({crash}); hint: {found.hints[0]}"
        return Feedback(exercise_id, "wrong", message)
    except Exception as error:  # noqa: BLE001 - the learner's code may raise anything
        message = f"your code raised {type(error).__name__}: {error}. Hint: {found.hints[0]}"
        return Feedback(exercise_id, "wrong", message)
    if problem is None:
        return Feedback(exercise_id, "passed", f"passed: {found.title}.")
    return Feedback(exercise_id, "wrong", problem)


def check(exercise_id: str, answer: Any, *, lesson: Lesson) -> Feedback:
    """Check the learner's ``answer`` to exercise ``exercise_id`` on the broker; print the feedback.

    Never raises because of the answer: a blank one prints "not done yet" with the
    first hint, a wrong one what went wrong, an error in it its type and message.

    Args:
        exercise_id: The id in the cell's ``# TRY IT <id>: <name>`` header.
        answer: What the learner wrote (usually the function the cell defines).
        lesson: The lesson from ``course.setup``; the check uses its broker and keys.

    Raises:
        ExerciseError: No exercise has that id.
    """
    feedback = judge(exercise_id, answer, lesson=lesson)
    show(str(feedback))  # the check cell's output is this line
    return feedback


def fresh_key(lesson: Lesson, name: str) -> str:
    """Return ``lesson.key(name)`` after deleting it and every key inside its hash tag.

    A check calls it first, so running the check again starts from nothing.
    """
    key = lesson.key(name)
    doomed = list(lesson.client.scan_iter(match=f"{key}*", count=1000))
    if doomed:
        lesson.client.delete(*doomed)
    return key


class CrashingClient(redis.Redis):
    """A client that "crashes" (raises :class:`SimulatedCrash`) instead of its Nth command.

    Commands before the Nth are sent as usual, the Nth is not sent, and every later
    command raises too (a dead process sends nothing). Scripts registered with
    :meth:`register_script` on it count one command per call, so a Lua script
    is one step a crash can land before or after, never inside. ``crash_at=0``
    never crashes and counts commands in :attr:`sent`.
    """

    def __init__(self, pool: redis.ConnectionPool, *, crash_at: int = 0) -> None:
        """Use ``pool`` (share the lesson client's); crash at command number ``crash_at``."""
        super().__init__(connection_pool=pool)
        self.crash_at = crash_at
        self.sent: list[str] = []

    def execute_command(self, *args: Any, **options: Any) -> Any:
        """Send the command, unless this is the command the crash lands on (or after it)."""
        if self.crash_at and len(self.sent) + 1 >= self.crash_at:
            raise SimulatedCrash(f"crashed before command {self.crash_at} ({args[0]})")
        self.sent.append(str(args[0]))
        return super().execute_command(*args, **options)  # type: ignore[no-untyped-call]


def run_async(make: Callable[[], Coroutine[Any, Any, T]], *, timeout: float = 30.0) -> T:
    """Run the coroutine ``make()`` to completion in its own thread and event loop.

    A check is a plain function, but the notebook's kernel already runs an event
    loop; a thread of its own lets a check start a :class:`~eventlab.consumer.Reliable`
    runtime from a synchronous call.
    """
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result(timeout=timeout)


@dataclass(frozen=True, slots=True)
class Section:
    """One try-it cell in a solutions file.

    Attributes:
        id: The exercise id from its header.
        name: The name the check cell passes to :func:`check`.
        source: The whole cell with its reference answer (header line first).
    """

    id: str
    name: str
    source: str

    @property
    def blank(self) -> str:
        """The learner's cell: every solution block becomes ``raise NotImplementedError``."""
        return blank(self.source, where=self.id)


def sections(text: str) -> list[Section]:
    """Split a ``solutions/lessons/lessonNN.py`` file into its try-it cells.

    Lines before the first ``# TRY IT`` header (the file's docstring) are not part
    of any cell; a cell ends where the next header starts (trailing blank lines dropped).

    Raises:
        ExerciseError: No header, or one id twice.
    """
    cells: list[list[str]] = []
    for line in text.splitlines():
        if HEADER.match(line):
            cells.append([line])
        elif cells:
            cells[-1].append(line)
    found = []
    for cell in cells:
        head = HEADER.match(cell[0])
        if head is not None:  # always: every cell starts with its header
            found.append(Section(head["id"], head["name"], "\n".join(cell).rstrip() + "\n"))
    ids = [s.id for s in found]
    if not found or len(set(ids)) != len(ids):
        raise ExerciseError(
            f"try-it sections {ids}: none, or an id twice", fix="one '# TRY IT <id>: <name>' each"
        )
    return found


def blank(source: str, *, where: str = "<cell>") -> str:
    """Return the learner's copy of a try-it cell (the labs' solution markers stripped)."""
    return strip_solutions(source, where=where)
