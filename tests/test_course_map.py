"""The course map (notebooks/README.md) and the rendered index list every lesson as it is."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

from eventlab import course, labs

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
LESSONS = sorted(NOTEBOOKS.glob("[0-9][0-9]-*.ipynb"))
ROW = re.compile(r"^\| (\d\d) \| \[[^\]]+\]\(([^)]+)\) \| (\d+) min \|", re.MULTILINE)


def _rows(text: str) -> dict[str, tuple[str, int]]:
    return {m[1]: (m[2], int(m[3])) for m in ROW.finditer(text)}


def _index_text() -> str:
    nb = json.loads((NOTEBOOKS / "index.ipynb").read_text())
    assert all(c["cell_type"] == "markdown" for c in nb["cells"]), "the index is prose only"
    return "\n".join("".join(c["source"]) for c in nb["cells"])


def test_map_lists_thirteen_lessons_in_order():
    """README.md has one row per lesson 00-12, in order, each naming a .ipynb."""
    rows = _rows((NOTEBOOKS / "README.md").read_text())
    assert list(rows) == [f"{n:02d}" for n in range(13)]
    assert all(
        name.startswith(f"{n}-") and name.endswith(".ipynb") for n, (name, _) in rows.items()
    )


def test_index_matches_the_map():
    """index.ipynb (what `eventlab lab` opens first) shows the same lessons, links and times."""
    assert _rows(_index_text()) == _rows((NOTEBOOKS / "README.md").read_text())


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name)
def test_every_lesson_is_on_the_map_with_its_time(path):
    """Each lesson notebook is linked from the map, with the time its first cell states."""
    name, minutes = _rows((NOTEBOOKS / "README.md").read_text())[path.name[:2]]
    assert name == path.name
    first = "".join(json.loads(path.read_text())["cells"][0]["source"])
    stated = re.search(r"\*\*Time:\*\* about (\d+) minutes", first)
    assert stated, "the first cell states **Time:** about N minutes"
    assert int(stated[1]) == minutes


# -- the course map as data (eventlab.course): one source for the guide --------------

ROOT = NOTEBOOKS.parent


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_course_data_matches_the_map():
    """course.LESSONS has the map's ids, notebooks and minutes; LABS the solutions' folders."""
    rows = _rows((NOTEBOOKS / "README.md").read_text())
    assert {i.id: (i.notebook, i.minutes) for i in course.LESSONS} == rows
    assert [lab.name for lab in course.LABS] == [p.name for p in labs.lab_dirs(ROOT / "solutions")]
    table = (NOTEBOOKS / "README.md").read_text()
    for lab in course.LABS:
        link = f"[labs/{lab.name}](../labs/{lab.name}/{lab.name}.ipynb)"
        assert f"| {link} | {lab.after} |" in table


def _detected_needs(path: Path) -> set[str]:
    """What a lesson's code does beyond its own keys, read from the calls it makes."""
    nb = json.loads(path.read_text())
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    found = set()
    if "processes.spawn" in code and ".kill()" in code:
        found.add("kill-consumer")
    if "dashboard.show" in code:
        found.add("pause-broker")  # the dashboard's Pause broker button
    if "scenarios.kill9_rdb_vs_aof" in code:
        found |= {"kill-broker", "restart-broker", "flush-broker"}
    if "scenarios.graceful_restart" in code or "broker_restart_no_persistence" in code:
        found.add("restart-broker")
    if "scenarios.latency_partition_heal" in code or "faults.partition" in code:
        found.add("proxy")
    if "scenarios.consumer_kill_before_ack" in code:
        found.add("kill-consumer")
    return found


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name)
def test_declared_needs_are_what_the_lesson_does(path):
    """Each lesson's declared needs in course.LESSONS equal what its cells call."""
    assert course.lesson_info(path.name[:2]).needs == _detected_needs(path)


def test_guide_is_generated_from_the_course_map():
    """docs/instructor.md's avoid-list, agendas and lesson notes are up to date with course.py."""
    guide = _script("instructor_guide")
    text = (ROOT / "docs" / "instructor.md").read_text()
    assert guide.render(text) == text, "run python scripts/instructor_guide.py"
    avoid = text.split("<!-- BEGIN GENERATED: setup-b -->")[1].split("<!-- END GENERATED")[0]
    listed = re.findall(r"^\| (\d\d) ", avoid, re.MULTILINE)
    assert listed == [i.id for i in course.private_broker_lessons()] == ["05", "10", "11"]
    assert "03" not in listed  # 03 and 04 kill only their own consumer processes
    assert "04" not in listed


@pytest.mark.parametrize("length", sorted(course.AGENDAS))
def test_agendas_take_lesson_times_from_the_map(length):
    """Every lesson block lasts the map's minutes; days fit their length; blocks are contiguous."""
    limit = {"3 hours": 180, "one day": 8 * 60, "two days": 8 * 60}[length]
    for day in course.agenda(length):
        clock = 0
        for block in day:
            assert block.start == clock
            clock += block.minutes
            if block.lesson is not None:
                assert block.minutes == course.lesson_info(block.lesson).minutes
        assert clock <= limit
    text = course.agenda_markdown(length)
    assert "| 09:00 |" in text


def test_two_days_cover_every_lesson_and_lab():
    """The two-day agenda runs every lesson once and every lab."""
    days = course.agenda("two days")
    lessons = [b.lesson for day in days for b in day if b.lesson]
    assert lessons == [i.id for i in course.LESSONS]
    labels = " ".join(b.label for day in days for b in day)
    assert all(lab.name in labels for lab in course.LABS)


@pytest.mark.parametrize("info", course.LESSONS, ids=lambda i: i.id)
def test_every_lesson_has_talking_points_and_discussion_prompts(info):
    """At least two talking points and two distinct questions per lesson, and a demo."""
    assert len(info.talking_points) >= 2
    assert len(info.discussion) >= 2
    assert len(set(info.discussion)) == len(info.discussion)
    assert all(prompt.rstrip().endswith("?") for prompt in info.discussion)
    assert info.demo


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name)
def test_every_lesson_ends_with_lesson_done(path):
    """The last cell is the tagged lesson.done() code cell that records 'passed'."""
    last = json.loads(path.read_text())["cells"][-1]
    assert last["cell_type"] == "code"
    assert "lesson-done" in last["metadata"]["tags"]
    assert "lesson.done()" in "".join(last["source"])


def test_the_done_cell_script_is_idempotent():
    """scripts/lesson_done_cell.py --check finds nothing to change (re-applying is a no-op)."""
    assert _script("lesson_done_cell").main(["--check"]) == 0


def test_seed_coverage_names_real_proving_cells():
    """docs/seed-coverage.md: each row's proving cells exist in its lesson and assert a claim."""
    table = (ROOT / "docs" / "seed-coverage.md").read_text()
    lessons = {p.name[:2]: p for p in NOTEBOOKS.glob("[0-9][0-9]-*.ipynb")}
    rows = re.findall(r"^\| [^|]+ \| (\d\d) \| [^|]+ \| ([^|]+) \|", table, re.MULTILINE)
    assert len(rows) >= 70
    assert {lesson for lesson, _ in rows} == set(lessons) - {"00"}
    for lesson, cells in rows:
        nb = json.loads(lessons[lesson].read_text())
        sources = {c.get("id"): "".join(c["source"]) for c in nb["cells"]}
        for cell in re.findall(r"`([\w-]+)`", cells):
            assert "What this just proved" in sources.get(cell, ""), (lesson, cell)


def test_index_says_which_lessons_a_graded_lab_follows():
    """The map's "After lessons …, do the graded lab" names exactly the lessons labs follow."""
    text = " ".join(_index_text().split())
    said = re.search(r"After lessons ([\d, and]+), do the graded lab", text)
    assert said, "the index says after which lessons to do the graded lab"
    assert re.findall(r"\d\d", said[1]) == sorted({lab.after for lab in course.LABS})
