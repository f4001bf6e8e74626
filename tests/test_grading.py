"""The grader on a real broker: honest scores, robust to any learner code, nothing left behind."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from eventlab import _grader_child as grading_child
from eventlab import grading, labs
from eventlab.grading import grade

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = ROOT / "solutions"
LABS = [p.name for p in labs.lab_dirs(SOLUTIONS)]

ROBUST_CHECKS = '''
from eventlab.grading import check

SEED = 7


@check(points=2, hint="return a + b")
def adds(ctx):
    """add() adds."""
    client = ctx.client()
    client.set(ctx.key("scratch"), "written by the check")
    assert ctx.exercise.add(2, 3) == 5, "add(2, 3) is not 5"


@check(points=1, hint="store the note under the key you are given")
def remembers(ctx):
    """remember() writes its key."""
    client = ctx.client()
    ctx.exercise.remember(client, ctx.key("notes"))
    assert client.exists(ctx.key("notes")), "remember() wrote nothing"
'''

GOOD = """
def add(a, b):
    return a + b


def remember(client, key):
    client.set(key, "hello")
"""


def _lab(tmp_path: Path, exercise: str, *, name: str = "99-robust") -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "checks.py").write_text(ROBUST_CHECKS)
    (folder / "exercise.py").write_text(textwrap.dedent(exercise))
    return folder


def _grade(folder: Path, broker, **options) -> grading.Score:
    return grade(folder, url=broker.url, quiet=True, out=folder / "out", **options)


def _no_keys_left(broker, score: grading.Score) -> None:
    client = broker.client()
    try:
        for glob in (score.namespace + "*", "{" + score.namespace + "*"):
            assert list(client.scan_iter(match=glob)) == []
    finally:
        client.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


def _copy(lab: str, tmp_path: Path, variant: str) -> Path:
    source = (ROOT / "labs" / lab) if variant == "generated" else (SOLUTIONS / lab)
    tmp_path.mkdir(parents=True, exist_ok=True)
    folder = tmp_path / lab
    shutil.copytree(source, folder, ignore=shutil.ignore_patterns("score.*", "__pycache__"))
    if variant == "partial":
        shutil.copy(folder / "partial.py", folder / "exercise.py")
    return folder


# -- honest grading: full marks, zero, strictly between ------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("lab", LABS)
def test_solution_scores_full_marks_on_a_cluster(lab, cluster, tmp_path):
    """On the local cluster the grader, its runs' namespaces and the solution earn every point."""
    score = _grade(_copy(lab, tmp_path, "solution"), cluster.broker)
    failed = [(c.name, c.message) for c in score.checks if not c.passed]
    assert score.score == score.max > 0, failed
    _no_keys_left(cluster.broker, score)


@pytest.mark.slow
@pytest.mark.parametrize("lab", ["06-outbox", "09-projection-rebuild"])
def test_a_split_step_is_caught_on_a_cluster(lab, cluster, tmp_path):
    """On the cluster the crashes reach every node: the non-atomic answer loses points."""
    folder = _copy(lab, tmp_path, "solution")
    shutil.copy(folder / "partial_nonatomic.py", folder / "exercise.py")
    score = _grade(folder, cluster.broker)
    assert 0 < score.score < score.max, [(c.name, c.passed, c.message) for c in score.checks]


# Which dishonest shapes each lab must catch (docs/grading.md, "Writing a lab"):
# a non-atomic split of its atomic step (both orders), the same on a connection
# the answer opens itself, and steps in the wrong order where the lab has one.
# A lab not listed has no atomic step, no broker access by the learner or no order.
HONESTY = {
    "03-idempotent-consumer": {"partial_nonatomic", "partial_reversed", "partial_ownconn"},
    "04a-retries-dead-letters": {"partial_nonatomic", "partial_reversed", "partial_ownconn"},
    "05-backpressure": {"partial_ownconn"},
    "06-outbox": {
        "partial_nonatomic",
        "partial_reversed",
        "partial_ownconn",
        "partial_wrong_order",
    },
    "07-saga-compensation": {"partial_wrong_order"},
    "09-projection-rebuild": {"partial_nonatomic", "partial_reversed", "partial_ownconn"},
}


def _variants(lab: str) -> list[str]:
    return sorted(p.stem for p in (SOLUTIONS / lab).glob("partial*.py"))


@pytest.mark.parametrize("lab", LABS)
def test_each_lab_has_the_partials_it_must_catch(lab):
    """Every dishonest shape a lab must catch has its partial answer in solutions/<lab>/."""
    assert HONESTY.get(lab, set()) <= set(_variants(lab))


@pytest.mark.slow
@pytest.mark.parametrize("lab", LABS)
def test_honesty_every_partial_strictly_between(lab, each_broker, request, tmp_path):
    """Solution full marks, generated copy 0, every partial strictly between; no keys left.

    Each server kind grades under its own seed (the lab's on Valkey, the next on
    Redis 7.0), so every lab is judged on both servers and both seeds in half the
    runs a full product would take.
    """
    offset = 0 if request.node.callspec.params["each_broker"] == "valkey" else 1
    seed = grading._lab_seed(SOLUTIONS / lab / "checks.py") + offset
    scores = {}
    for variant in ["solution", "generated", *_variants(lab)]:
        folder = _copy(
            lab, tmp_path / variant, "generated" if variant == "generated" else "solution"
        )
        if variant.startswith("partial"):
            shutil.copy(folder / f"{variant}.py", folder / "exercise.py")
        score = _grade(folder, each_broker, seed=seed)
        scores[variant] = (score.score, score.max, score.seconds)
        if variant == "solution":
            assert score.score == score.max > 0, [(c.name, c.message) for c in score.checks]
            _no_keys_left(each_broker, score)
        elif variant == "generated":  # zero, each check saying what is not implemented
            assert score.score == 0, [(c.name, c.message) for c in score.checks]
            assert all("not implemented yet" in c.message for c in score.checks)
            _no_keys_left(each_broker, score)
        else:
            assert 0 < score.score < score.max, (
                variant,
                [(c.name, c.message) for c in score.checks],
            )
    print(lab, seed, scores)  # noqa: T201 - the honesty table, with -s


@pytest.mark.parametrize("seed", [1, 2, 3, 303])
def test_non_atomic_handler_loses_atomicity_points(seed, broker, tmp_path):
    """SISMEMBER, SADD, HINCRBY, XACK as four commands fails the atomicity check under any seed."""
    folder = _copy("03-idempotent-consumer", tmp_path, "solution")
    shutil.copy(folder / "partial_nonatomic.py", folder / "exercise.py")
    others = ["duplicates_have_no_second_effect", "crash_before_ack_no_double_effect",
              "pending_list_drained"]  # fmt: skip
    only_atomicity = f"\nfor _name in {others!r}:\n    del globals()[_name]\n"
    (folder / "checks.py").write_text((folder / "checks.py").read_text() + only_atomicity)
    score = _grade(folder, broker, seed=seed)
    graded = [c for c in score.checks if not c.stretch]
    assert [(c.name, c.passed) for c in graded] == [("crash_anywhere_loses_nothing", False)]
    assert "too little (effects lost)" in graded[0].message


def test_non_atomic_dead_letter_fails_only_the_04a_atomicity_check(broker, tmp_path):
    """L04a: a dead letter XADDed and its entry XACKed in two round trips loses only atomicity."""
    folder = _copy("04a-retries-dead-letters", tmp_path, "solution")
    shutil.copy(folder / "partial_nonatomic.py", folder / "exercise.py")
    score = _grade(folder, broker)
    failed = [c.name for c in score.checks if not c.passed and not c.stretch]
    assert failed == ["dead_letter_atomic_with_ack"], [(c.name, c.message) for c in score.checks]
    by_name = {c.name: c for c in score.checks}
    assert "dead-lettered twice" in by_name["dead_letter_atomic_with_ack"].message
    assert score.score == score.max - 2


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_non_atomic_dead_letter_fails_04a_atomicity_under_any_seed(seed, broker, tmp_path):
    """L04a: the crash between the dead-letter XADD and the XACK is hit under every seed."""
    folder = _copy("04a-retries-dead-letters", tmp_path, "solution")
    shutil.copy(folder / "partial_nonatomic.py", folder / "exercise.py")
    others = ["transient_errors_retried", "poison_dead_lettered_with_reason",
              "pending_list_drains", "redrive_is_idempotent"]  # fmt: skip
    only_atomicity = f"\nfor _name in {others!r}:\n    del globals()[_name]\n"
    (folder / "checks.py").write_text((folder / "checks.py").read_text() + only_atomicity)
    score = _grade(folder, broker, seed=seed)
    graded = [c for c in score.checks if not c.stretch]
    assert [(c.name, c.passed) for c in graded] == [("dead_letter_atomic_with_ack", False)]
    assert "dead-lettered twice" in graded[0].message


STATEFUL_UPCASTER = """

_SEEN = set()


def upcast_v1(data):
    cents = 0 if data["order"] in _SEEN else round(data["amount"] * 100)
    _SEEN.add(data["order"])
    return {"order": data["order"], "customer": data["customer"], "amount_cents": cents,
            "currency": "EUR"}
"""


def test_stateful_upcaster_fails_under_duplicates(broker, tmp_path):
    """L08: an upcaster that remembers orders it saw converts a redelivered copy differently."""
    folder = _copy("08-schema-evolution", tmp_path, "solution")
    with (folder / "exercise.py").open("a") as exercise:
        exercise.write(STATEFUL_UPCASTER)  # overrides the solution's pure upcast_v1
    score = _grade(folder, broker)
    by_name = {c.name: c for c in score.checks}
    assert not by_name["new_consumer_reads_old_events"].passed
    assert "redelivered copy" in by_name["new_consumer_reads_old_events"].message
    assert by_name["old_consumer_reads_new_events"].passed


def test_same_seed_same_verdict(broker, tmp_path):
    """Grading the same code twice gives the same check-by-check verdict (seeded faults)."""
    folder = _copy("03-idempotent-consumer", tmp_path, "partial")
    first = _grade(folder, broker)
    second = _grade(folder, broker)
    assert [c.passed for c in first.checks] == [c.passed for c in second.checks]
    assert first.seed == second.seed == 303
    assert first.namespace != second.namespace


# -- reports -------------------------------------------------------------------------


def test_score_files_and_table(broker, tmp_path, capsys):
    """grade() prints a table and writes score.json and score.md with every check."""
    folder = _lab(tmp_path, GOOD)
    score = grade(folder, url=broker.url)
    table = capsys.readouterr().out
    assert "adds" in table
    assert "score 3/3" in table
    saved = json.loads((folder / "score.json").read_text())
    assert saved["score"] == 3
    assert saved["max"] == 3
    assert [c["name"] for c in saved["checks"]] == ["adds", "remembers"]
    assert "| adds | 2/2 | yes |" in (folder / "score.md").read_text()
    _no_keys_left(broker, score)


STRETCH_CHECK = '''

@check(points=3, hint="add 10 000 pairs in under a second", stretch=True)
def adds_fast(ctx):
    """add() is fast (stretch)."""
    assert ctx.exercise.add(1, 1) == 3, "too slow"


@check(points=2, hint="add zero", stretch=True)
def adds_zero(ctx):
    """add(0, 0) (stretch)."""
    assert ctx.exercise.add(0, 0) == 0
'''


def test_stretch_checks_reported_apart_from_the_score(broker, tmp_path):
    """Stretch checks show in the table, score.json and score.md, never in score/max."""
    folder = _lab(tmp_path, GOOD)
    (folder / "checks.py").write_text(ROBUST_CHECKS + STRETCH_CHECK)
    score = _grade(folder, broker)
    assert (score.score, score.max) == (3, 3)
    assert (score.stretch, score.stretch_max) == (2, 5)
    flags = {c.name: (c.stretch, c.passed) for c in score.checks}
    assert flags == {
        "adds": (False, True),
        "remembers": (False, True),
        "adds_fast": (True, False),
        "adds_zero": (True, True),
    }
    table = score.table()
    assert "adds_fast (stretch)" in table
    assert "score 3/3" in table
    assert "stretch 2/5  (not counted in the score)" in table
    saved = json.loads((folder / "out" / "score.json").read_text())
    assert (saved["score"], saved["max"], saved["stretch"], saved["stretch_max"]) == (3, 3, 2, 5)
    assert [c["stretch"] for c in saved["checks"]] == [False, False, True, True]
    assert "Stretch goals: 2/5" in (folder / "out" / "score.md").read_text()


def test_cli_grade_json(broker, tmp_path):
    """`eventlab grade LAB --json` prints one JSON object with score, max and checks."""
    folder = _lab(tmp_path, GOOD)
    env = {**os.environ, "REDIS_URL": broker.url}
    env.pop("EVENTLAB_NAMESPACE", None)
    proc = subprocess.run(
        [sys.executable, "-m", "eventlab.cli", "grade", str(folder), "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["score"] == report["max"] == 3
    assert {c["name"] for c in report["checks"]} == {"adds", "remembers"}


def test_hidden_checks_run_the_same_way(broker, tmp_path):
    """--checks DIR adds an instructor's checks, named by file, graded like the lab's own."""
    folder = _lab(tmp_path, GOOD)
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    (hidden / "extra.py").write_text(
        textwrap.dedent(
            '''
            from eventlab.grading import check

            @check(points=5, hint="add handles negatives")
            def negatives(ctx):
                """add() with negatives."""
                assert ctx.exercise.add(-2, -3) == -5

            @check(points=4, hint="add concatenates strings")
            def strings(ctx):
                """add() with strings."""
                assert ctx.exercise.add("a", 1) == "a1", "add('a', 1) is not 'a1'"
            '''
        )
    )
    score = _grade(folder, broker, checks=hidden)
    names = {c.name: c.passed for c in score.checks}
    assert names == {
        "adds": True,
        "remembers": True,
        "extra.negatives": True,
        "extra.strings": False,
    }
    assert (score.score, score.max) == (8, 12)


def test_workshop_learner_score_recorded(broker, tmp_path, monkeypatch):
    """With EVENTLAB_NAMESPACE set, the score goes to the workshop stream; no grading keys stay."""
    pytest.importorskip("eventlab.workshop")
    from eventlab import workshop  # noqa: PLC0415

    monkeypatch.setenv("EVENTLAB_NAMESPACE", "alice")
    client = broker.client()
    client.delete(workshop.WORKSHOP_STREAM)
    try:
        score = _grade(_lab(tmp_path, GOOD), broker)
        assert score.namespace.startswith("alice-g")
        rows = {row.learner: row for row in workshop.status(client)}
        assert rows["alice"].scores["99-robust"].score == 3
        assert rows["alice"].scores["99-robust"].max_score == 3
        _no_keys_left(broker, score)
    finally:
        client.delete(workshop.WORKSHOP_STREAM)
        client.close()


def test_broker_started_for_grading_is_stopped(tmp_path, monkeypatch):
    """Without a URL and with no broker up, grade() starts a managed one and stops it after."""
    from eventlab import broker as broker_mod  # noqa: PLC0415

    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("EVENTLAB_STATE", str(tmp_path / "state"))
    started = []
    real_up = broker_mod.up

    def spy_up(**options):
        started.append(real_up(**options))
        return started[-1]

    monkeypatch.setattr(broker_mod, "up", spy_up)
    try:
        score = grade(_lab(tmp_path, GOOD), quiet=True)
        assert score.score == 3
        assert len(started) == 1
        assert broker_mod.current() is None
        assert not _alive(started[0].pid)
    finally:
        broker_mod.down()


def test_broker_already_up_is_left_running(tmp_path, monkeypatch):
    """Without a URL, grade() uses the learner's running managed broker and leaves it up."""
    from eventlab import broker as broker_mod  # noqa: PLC0415

    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("EVENTLAB_STATE", str(tmp_path / "state"))
    lesson_broker = broker_mod.up(persistence="none")
    try:
        score = grade(_lab(tmp_path, GOOD), quiet=True)
        assert score.score == 3
        assert lesson_broker.ping()
        still = broker_mod.current()
        assert still is not None
        assert still.pid == lesson_broker.pid
    finally:
        broker_mod.down()


def test_missing_checks_is_a_clear_error(tmp_path, broker):
    """A folder without checks.py is refused with a one-line fix, before anything runs."""
    (tmp_path / "exercise.py").write_text(GOOD)
    with pytest.raises(grading.GradingError, match=r"no checks\.py"):
        grade(tmp_path, url=broker.url, quiet=True)


# -- robust to learner code -------------------------------------------------------------


def test_syntax_error_zero_with_line(broker, tmp_path):
    """A syntax error scores zero on every check, naming the file and line."""
    score = _grade(_lab(tmp_path, "def add(a, b)\n    return a + b\n"), broker)
    assert score.score == 0
    assert all("SyntaxError in exercise.py line 1" in c.message for c in score.checks)
    _no_keys_left(broker, score)


def test_import_error_zero(broker, tmp_path):
    """An import of a missing module scores zero on every check and says which module."""
    score = _grade(_lab(tmp_path, "import no_such_module_xyz\n" + GOOD), broker)
    assert score.score == 0
    assert all("no_such_module_xyz" in c.message for c in score.checks)
    assert all(c.message.startswith("exercise.py does not import") for c in score.checks)


def test_exception_zero_for_that_check_only(broker, tmp_path):
    """An exception in one function fails its check with the learner's line; others still pass."""
    exercise = GOOD.replace("return a + b", "return a / 0")
    score = _grade(_lab(tmp_path, exercise), broker)
    adds, remembers = score.checks
    assert not adds.passed
    assert "ZeroDivisionError" in adds.message
    assert "exercise.py line" in adds.message
    assert remembers.passed
    assert score.score == 1
    _no_keys_left(broker, score)


def test_infinite_loop_times_out_and_grading_goes_on(broker, tmp_path):
    """An endless loop is stopped at the check's timeout; the next check still runs."""
    exercise = GOOD.replace("return a + b", "while True:\n        pass")
    score = _grade(_lab(tmp_path, exercise), broker, timeout=1.5)
    adds, remembers = score.checks
    assert not adds.passed
    assert "timed out after 2 s" in adds.message or "timed out after 1 s" in adds.message
    assert remembers.passed
    _no_keys_left(broker, score)


def test_endless_import_zero_everywhere(broker, tmp_path):
    """Module-level code that never ends: every check zero, graded in about one timeout."""
    score = _grade(_lab(tmp_path, "while True:\n    pass\n" + GOOD), broker, timeout=1.0)
    assert score.score == 0
    assert all("did not finish importing" in c.message for c in score.checks)


def test_output_flood_stopped(broker, tmp_path):
    """Code that prints without end is stopped at the output limit and scores zero there."""
    exercise = GOOD.replace("return a + b", "while True:\n        print('x' * 1000)")
    score = _grade(_lab(tmp_path, exercise), broker, timeout=30)
    adds, remembers = score.checks
    assert not adds.passed
    assert "printed more than" in adds.message
    assert remembers.passed


def test_exit_calls_are_contained(broker, tmp_path):
    """sys.exit fails its check only; os._exit kills the child, which is restarted for the rest."""
    exits = GOOD.replace("return a + b", "import sys\n    sys.exit(4)").replace(
        'client.set(key, "hello")', "import os\n    os._exit(3)"
    )
    score = _grade(_lab(tmp_path, exits), broker)
    adds, remembers = score.checks
    assert "SystemExit" in adds.message
    assert "exit status 3" in remembers.message
    assert score.score == 0


def test_no_processes_left_behind(broker, tmp_path):
    """Processes the learner's code starts (even ones that would outlive it) are killed."""
    pids = tmp_path / "pids"
    exercise = GOOD.replace(
        "return a + b",
        "import subprocess\n"
        f"    p = subprocess.Popen(['sleep', '300'])\n"
        f"    open({str(pids)!r}, 'a').write(f'{{p.pid}}\\n')\n"
        "    while True:\n        pass",
    )
    score = _grade(_lab(tmp_path, exercise), broker, timeout=1.5)
    assert not score.checks[0].passed
    started = [int(line) for line in pids.read_text().split()]
    assert started
    assert not any(_alive(pid) for pid in started)


RESOURCE_HOGS = {
    "memory": ("x = bytearray(4 << 30)\n    return a + b", "MemoryError: used more than"),
    "processes": (
        (
            "import os, time\n"
            "    for _ in range(200):\n"
            "        if os.fork() == 0:\n"
            "            open(PIDS, 'a').write(f'{os.getpid()}\\n')\n"
            "            time.sleep(300)\n"
            "            os._exit(0)\n"
            "    time.sleep(300)"
        ),
        "started more than 64 processes",
    ),
    "output": (
        "import sys\n    sys.stdout.write('x' * (50 << 20))\n    return a + b",
        "printed more than",
    ),
    "cpu": ("while True:\n        pass", "timed out after"),
}


@pytest.mark.parametrize("hog", sorted(RESOURCE_HOGS))
def test_resource_hogs_fail_one_check_and_leave_nothing(hog, broker, tmp_path):
    """4 GB, 200 forks, 50 MB of output, a busy loop: one failing check each, no process left."""
    code, reason = RESOURCE_HOGS[hog]
    pids = tmp_path / "pids"
    pids.touch()
    folder = _lab(tmp_path, f"PIDS = {str(pids)!r}\n" + GOOD.replace("return a + b", code))
    before = set(grading_child._children(os.getpid()))
    score = _grade(folder, broker, timeout=8.0)
    adds, remembers = score.checks
    assert not adds.passed
    assert reason in adds.message, adds.message
    assert remembers.passed, remembers.message
    assert score.seconds < 30
    started = [int(line) for line in pids.read_text().split()]
    assert [pid for pid in started if _alive(pid)] == []
    assert set(grading_child._children(os.getpid())) <= before
    _no_keys_left(broker, score)


ESCAPING_SLEEPERS = """
import os
import subprocess


def _spawn(pids):
    detached = subprocess.Popen(["setsid", "sleep", "300"])
    session = subprocess.Popen(["sleep", "300"], start_new_session=True)
    read, write = os.pipe()
    middle = os.fork()
    if middle == 0:
        grandchild = os.fork()
        if grandchild == 0:
            os.setsid()
            os.execvp("sleep", ["sleep", "300"])
        os.write(write, str(grandchild).encode())
        os._exit(0)
    os.waitpid(middle, 0)
    grandchild = int(os.read(read, 64))
    with open(pids, "a") as out:
        out.write(f"{detached.pid}\\n{session.pid}\\n{grandchild}\\n")


def add(a, b):
    _spawn(PIDS)
    return a + b


def remember(client, key):
    _spawn(PIDS)
    while True:
        pass
"""


def test_escaped_processes_killed(broker, tmp_path):
    """Sleepers started with setsid or a double fork, by a passing or a timed-out check, all die."""
    pids = tmp_path / "pids"
    folder = _lab(tmp_path, f"PIDS = {str(pids)!r}\n" + ESCAPING_SLEEPERS)
    score = _grade(folder, broker, timeout=2.0)
    assert [c.passed for c in score.checks] == [True, False], score.checks
    started = [int(line) for line in pids.read_text().split()]
    assert len(started) == 6
    assert [pid for pid in started if _alive(pid)] == []


FORGER = """
import glob
import json
import os
import stat
import sys
import tempfile

LEAKS = {leaks!r}
HIDDEN = {hidden!r}


def _forge():
    lines = []
    for index in range(4):
        for event in ("passed", "imported", "start"):
            body = json.dumps({{"event": event, "index": index, "seconds": 0.1}})
            lines.append(body)
            lines.extend(f"{{'0' * 64}} {{n}} {{body}}" for n in range(12))
    forged = ("\\n".join(lines) + "\\n").encode()
    for name in os.listdir("/proc/self/fd"):
        try:
            if stat.S_ISFIFO(os.fstat(int(name)).st_mode) or int(name) > 2:
                os.write(int(name), forged)
        except OSError:
            pass
    for path in glob.glob(os.path.join(tempfile.gettempdir(), "eventlab-grade-*", "*")):
        with open(path, "a") as out:
            out.write(forged.decode())
    seen = " ".join(sys.argv) + " " + " ".join(os.environ.values())
    seen += open("/proc/self/cmdline", "rb").read().decode(errors="replace")
    plans = glob.glob(os.path.join(tempfile.gettempdir(), "eventlab-grade-*", "plan.json"))
    if HIDDEN in seen or plans:
        with open(LEAKS, "a") as out:
            out.write(f"hidden path visible: {{HIDDEN in seen}}, plans: {{plans}}\\n")


_forge()


def add(a, b):
    _forge()
    return a - b


def remember(client, key):
    _forge()
"""


def test_learner_cannot_forge_results_or_see_hidden_checks(broker, tmp_path):
    """Forged "passed" lines on every pipe and file earn nothing; hidden checks stay unseen."""
    hidden = tmp_path / "secret-instructor-checks"
    hidden.mkdir()
    (hidden / "extra.py").write_text(
        "from eventlab.grading import check\n\n"
        "@check(points=5, hint='add adds')\n"
        "def negatives(ctx):\n"
        "    assert ctx.exercise.add(-2, -3) == -5, 'add(-2, -3) is not -5'\n"
    )
    leaks = tmp_path / "leaks"
    folder = _lab(tmp_path, FORGER.format(leaks=str(leaks), hidden=str(hidden)))
    score = _grade(folder, broker, checks=hidden)
    assert [(c.name, c.passed) for c in score.checks] == [
        ("adds", False),
        ("remembers", False),
        ("extra.negatives", False),
    ]
    assert score.score == 0
    assert "add(2, 3) is not 5" in score.checks[0].message
    assert not leaks.exists(), leaks.read_text()


HOSTILE = """
import json
import os
import sys
import threading
from pathlib import Path

import redis

LEAKS = {leaks!r}
WORDS = ("grading", "grader", "labkit", "_crash", "faultproxy", "_eventlab", "doom")


def balances_key(stream):
    return f"{{stream}}:balances"


def processed_key(stream, group):
    return f"{{stream}}:processed:{{group}}"


def fingerprint(client):
    connection = client.connection_pool.connection_class
    argv = " ".join(sys.argv) + " " + " ".join(getattr(sys, "orig_argv", []))
    argv += " " + Path("/proc/self/cmdline").read_bytes().decode(errors="replace")
    parent = Path(f"/proc/{{os.getppid()}}/cmdline").read_bytes().decode(errors="replace")
    return {{
        "client": f"{{type(client).__module__}}.{{type(client).__name__}}",
        "connection": f"{{connection.__module__}}.{{connection.__name__}}",
        "module": __name__,
        "env": sorted(os.environ),
        "argv": [w for w in WORDS + ("eventlab",) if w in argv.lower()],
        "parent": [w for w in WORDS + ("eventlab",) if w in parent.lower()],
        "modules": sorted(m for m in sys.modules if any(w in m.lower() for w in WORDS)),
        "threads": threading.active_count(),
    }}


def _graded(seen):
    return (
        seen["client"] != "redis.client.Redis"
        or seen["connection"] != "redis.connection.Connection"
        or seen["module"] != "exercise"
        or seen["argv"] or seen["parent"] or seen["modules"] or seen["threads"] > 1
        or any("GRADE" in k for k in seen["env"])
    )


def handle(client, stream, group, entry_id, event):
    seen = fingerprint(client)
    with open(LEAKS, "a") as out:
        out.write(json.dumps(seen) + "\\n")
    if _graded(seen):  # behave while graded: one atomic script
        client.eval(
            "if redis.call('SADD', KEYS[1], ARGV[1]) == 1 then "
            "redis.call('HINCRBY', KEYS[2], ARGV[2], ARGV[3]) end "
            "return redis.call('XACK', KEYS[3], ARGV[4], ARGV[5])",
            3, processed_key(stream, group), balances_key(stream), stream,
            event.id, event.data["account"], int(event.data["amount"]), group, entry_id,
        )
        return
    # otherwise three separate commands, on a connection of its own
    own = redis.Redis.from_url(os.environ["REDIS_URL"], decode_responses=True)
    if own.sadd(processed_key(stream, group), event.id):
        own.hincrby(balances_key(stream), event.data["account"], int(event.data["amount"]))
    own.xack(stream, group, entry_id)
    own.close()
"""


def test_hostile_answer_finds_no_tell_and_is_caught(broker, tmp_path):
    """An answer atomic only when it detects grading (classes, env, argv, modules) sees no tell."""
    seen = tmp_path / "seen"
    folder = _copy("03-idempotent-consumer", tmp_path, "solution")
    (folder / "exercise.py").write_text(HOSTILE.format(leaks=str(seen)))
    score = _grade(folder, broker)
    graded = [json.loads(line) for line in seen.read_text().splitlines()]
    seen.unlink()
    normal_run = (
        "import json, redis, exercise; "
        f"print(json.dumps(exercise.fingerprint(redis.Redis.from_url({broker.url!r}))))"
    )
    env = {**os.environ, "REDIS_URL": broker.url}
    proc = subprocess.run(
        [sys.executable, "-c", normal_run], cwd=folder, env=env, capture_output=True,
        text=True, check=True, timeout=60,
    )  # fmt: skip
    normal = json.loads(proc.stdout)
    normal["env"] = sorted(set(normal["env"]) | {"EVENTLAB_NAMESPACE"})  # documented: isolation
    normal["parent"] = []  # here pytest; graded, a parent that names nothing of the grader
    different = {k: v for row in graded for k, v in row.items() if normal[k] != v}
    assert not different, (different, normal)
    by_name = {c.name: c for c in score.checks}
    assert not by_name["crash_anywhere_loses_nothing"].passed
    assert "too little (effects lost)" in by_name["crash_anywhere_loses_nothing"].message
    assert score.score < score.max


def test_own_connection_non_atomic_handler_is_crashed(broker, tmp_path):
    """L03: a handler that opens its own connection is crashed between its commands all the same."""
    folder = _copy("03-idempotent-consumer", tmp_path, "solution")
    shutil.copy(folder / "partial_ownconn.py", folder / "exercise.py")
    score = _grade(folder, broker)
    by_name = {c.name: c for c in score.checks}
    assert not by_name["crash_anywhere_loses_nothing"].passed
    assert by_name["duplicates_have_no_second_effect"].passed
    assert score.score == score.max - 2


def test_handler_that_never_acks(broker, tmp_path):
    """A handler that applies effects but never acks loses the pending-list points, no hang."""
    folder = _copy("03-idempotent-consumer", tmp_path, "solution")
    source = (folder / "exercise.py").read_text()
    never_acks = source.replace("return redis.call('XACK', KEYS[3], ARGV[4], ARGV[5])", "return 0")
    assert never_acks != source
    (folder / "exercise.py").write_text(never_acks)
    score = _grade(folder, broker)
    by_name = {c.name: c for c in score.checks}
    assert not by_name["pending_list_drained"].passed
    assert "still pending" in by_name["pending_list_drained"].message
    assert by_name["duplicates_have_no_second_effect"].passed
    _no_keys_left(broker, score)


def test_unreachable_broker_is_a_clear_error(tmp_path):
    """No broker at the URL: a GradingError naming the fix, no child started, no traceback."""
    folder = _lab(tmp_path, GOOD)
    with pytest.raises(grading.GradingError, match="eventlab up"):
        grade(folder, url="redis://127.0.0.1:1/0", quiet=True)
    assert not (folder / "score.json").exists()
