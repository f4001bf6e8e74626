"""Try-it exercises: one source per answer; every answer passes, every blank gets its hint."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from eventlab import course, exercises

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "solutions" / "lessons").glob("lesson*.py"))
SECTIONS = [(path, section) for path in SOURCES for section in exercises.sections(path.read_text())]
IDS = [section.id for _, section in SECTIONS]


def _preamble(path: Path) -> str:
    """The imports a solutions file puts before its first cell (the lesson provides them)."""
    text = path.read_text()
    return text[: text.index("# TRY IT ")]


def _answer(path: Path, source: str, name: str):
    namespace: dict = {}
    exec(compile(_preamble(path) + source, str(path), "exec"), namespace)  # noqa: S102 - our own file
    return namespace[name]


@pytest.fixture
def lesson(broker, client):
    """A Lesson on the test broker (lesson id 99: keys apart from any real lesson's)."""
    return course.Lesson(id="99", broker=broker, client=client)


def _lesson_cells(number: str) -> list[str]:
    [path] = (ROOT / "notebooks").glob(f"{number}-*.ipynb")
    nb = json.loads(path.read_text())
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]


@pytest.mark.parametrize(("path", "section"), SECTIONS, ids=IDS)
def test_reference_answer_passes(path, section, lesson):
    """The reference answer of every try-it exercise passes its check on a real broker."""
    feedback = exercises.judge(
        section.id, _answer(path, section.source, section.name), lesson=lesson
    )
    assert feedback.passed, str(feedback)


@pytest.mark.parametrize(("path", "section"), SECTIONS, ids=IDS)
def test_blank_gets_first_hint(path, section, lesson):
    """The learner's blank copy does not raise: its check says "not done yet" and the first hint."""
    feedback = exercises.judge(
        section.id, _answer(path, section.blank, section.name), lesson=lesson
    )
    assert feedback.status == "not done"
    assert exercises.get(section.id).hints[0] in feedback.message


@pytest.mark.parametrize(("path", "section"), SECTIONS, ids=IDS)
def test_lesson_cell_is_the_blank_and_is_checked(path, section):  # noqa: ARG001 - shared params
    """The lesson holds the blank generated from the source, and a later cell checks it."""
    cells = _lesson_cells(section.id[:2])
    blanks = [i for i, cell in enumerate(cells) if cell.strip() == section.blank.strip()]
    assert blanks, f"{section.id}: no cell equals its blank (run: python scripts/tryit.py)"
    call = f'exercises.check("{section.id}", {section.name}, lesson=lesson)'
    assert any(call in cell for cell in cells[blanks[0] + 1 :]), f"no later cell runs {call}"


def test_every_lesson_try_it_cell_has_a_source():
    """No try-it cell in a lesson lacks its reference answer (it would never be checked)."""
    known = set(IDS)
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb")):
        for cell in _lesson_cells(path.name[:2]):
            if match := exercises.HEADER.match(cell.splitlines()[0] if cell else ""):
                assert match["id"] in known, f"{path.name}: {match['id']} has no source"


def test_every_check_has_a_source():
    """Every registered check has a reference answer that is proven to pass it."""
    exercises.get(IDS[0])  # loads every lesson module
    assert set(exercises.EXERCISES) <= set(IDS)


def _check(exercise_id: str, source: str, lesson) -> exercises.Feedback:
    path = next(p for p, s in SECTIONS if s.id == exercise_id)
    name = next(s.name for _, s in SECTIONS if s.id == exercise_id)
    return exercises.judge(exercise_id, _answer(path, source, name), lesson=lesson)


def test_wrong_answers_get_specific_feedback(lesson):
    """Typical mistakes fail their checks with a message that names the mistake."""
    cases = {
        "00-first-event": (
            (
                "def say_hello(client, stream):\n"
                "    return streams.publish(client, stream, Event(type='SayHello', source='x'))\n"
            ),
            "use type='HelloSaid'",
        ),
        "01-fold": (
            (
                "def fold(events):\n    state = {}\n    for e in events:\n"
                "        if e.type == 'OrderPlaced':\n"
                "            state[e.subject] = {'items': 0, 'total': 0.0, 'status': 'placed'}\n"
                "        if e.type != 'OrderCancelled':\n"
                "            state[e.subject]['items'] += e.data['items']\n"
                "            state[e.subject]['total'] += e.data['total']\n    return state\n"
            ),
            "OrderCancelled must set its status",
        ),
        "02-ack-after-effect": (
            (
                "def handle_batch(client, stream, group, consumer, apply):\n"
                "    reply = client.xreadgroup(group, consumer, {stream: '>'}, count=10)\n"
                "    for entry_id, fields in reply[0][1]:\n"
                "        client.xack(stream, group, entry_id)\n"
                "        apply(Event.from_fields(fields))\n"
                "    return len(reply[0][1])\n"
            ),
            "XACK after the effect, never before",
        ),
        "03-withdrawals": (
            (
                "def process(client, stream, group, entry_id, event):\n"
                "    sign = 1 if event.type == 'Deposited' else -1\n"
                "    if client.zscore(demos.seen_key(stream), event.id) is None:\n"
                "        b = int(client.hget(demos.balance_key(stream), event.subject) or 0)\n"
                "        if b + sign * event.data['amount'] >= 0:\n"
                "            client.hincrby(demos.balance_key(stream), event.subject,"
                " sign * event.data['amount'])\n"
                "        client.zadd(demos.seen_key(stream), {event.id: 0})\n"
                "    client.xack(stream, group, entry_id)\n"
            ),
            "an effect ran twice or not at all; make the mark, the effect and the XACK one step",
        ),
        "04-classify": (
            "def handle_payment(event, provider):\n    provider.charge(event)\n",
            "retrying cannot help",
        ),
        "05-lag-bound": ("def how_many(lag, wanted):\n    return wanted\n", "lag reached"),
    }
    for exercise_id, (source, expected) in cases.items():
        header = f"# TRY IT {exercise_id}: x\n"
        feedback = _check(exercise_id, header + source, lesson)
        assert feedback.status == "wrong", (exercise_id, str(feedback))
        assert expected in feedback.message, (exercise_id, feedback.message)


def test_check_reports_errors_in_the_learners_code(lesson, capsys):
    """An exception in the learner's code is reported with its type and a hint, never raised."""

    def say_hello(_client, _stream):
        raise KeyError("oops")

    feedback = exercises.check("00-first-event", say_hello, lesson=lesson)
    assert feedback.status == "wrong"
    assert "KeyError" in capsys.readouterr().out


def test_unknown_exercise_names_the_known_ones(lesson):
    """A misspelt exercise id is an author's error that lists the ids that exist."""
    with pytest.raises(exercises.ExerciseError, match=re.escape("00-first-event")):
        exercises.check("00-nope", None, lesson=lesson)


async def test_checks_run_inside_a_running_event_loop(lesson):
    """As in a notebook kernel (a loop already running), a check that starts Reliable works."""
    [(path, section)] = [(p, s) for p, s in SECTIONS if s.id == "04-classify"]
    answer = _answer(path, section.source, section.name)
    feedback = exercises.judge(section.id, answer, lesson=lesson)
    assert feedback.passed, str(feedback)
