"""The room on real servers: ACL users keep learners apart, names are claimed, commands are safe."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from eventlab import broker as broker_mod
from eventlab import cli, course, doctor, faults, scenarios, streams, workshop
from eventlab._errors import EventlabError

# conftest.py switches the saved-name lookup off for every test; these tests need it.
_JOINED_NAMESPACE = streams._joined_namespace


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private state folder whose saved name streams.namespace() reads, as in a workshop."""
    folder = tmp_path / "state"
    monkeypatch.setenv("EVENTLAB_STATE", str(folder))
    monkeypatch.setattr(streams, "_joined_namespace", _JOINED_NAMESPACE)
    return folder


@pytest.fixture
def acl_room(each_store: broker_mod.Broker) -> Iterator[tuple[broker_mod.Broker, dict[str, str]]]:
    """Redis 7.0, Valkey 8.1 and a Valkey cluster with ACL users alice and bob; their URLs.

    On the cluster ``workshop.add`` reaches every node (ACL users are per node).
    """
    each_broker = each_store
    admin = each_broker.client()
    admin.flushall()
    urls = {}
    for name in ("alice", "bob"):
        password = workshop.add(admin, name)
        urls[name] = f"redis://{name}:{password}@127.0.0.1:{each_broker.port}/0"
    yield each_broker, urls
    for name in ("alice", "bob"):
        workshop._acl(admin, "DELUSER", name)  # on a cluster: every node
    admin.flushall()
    admin.close()


def _as(url: str) -> redis.Redis:
    return broker_mod.client_for_url(url, decode_responses=True)


def test_acl_learner_cannot_read_write_or_delete_another_learners_keys(acl_room):
    """Learner A, logged in as their ACL user, gets NOPERM on every command on B's keys."""
    _, urls = acl_room
    alice, bob = _as(urls["alice"]), _as(urls["bob"])
    bob.xadd("{bob:orders}", {"type": "OrderPlaced"})
    bob.set("bob:dedupe:1", "1")
    denied = {
        "XRANGE": lambda: alice.xrange("{bob:orders}"),
        "XREADGROUP": lambda: alice.xreadgroup("g", "c", {"{bob:orders}": ">"}),
        "GET": lambda: alice.get("bob:dedupe:1"),
        "SET": lambda: alice.set("bob:dedupe:1", "2"),
        "XADD": lambda: alice.xadd("{bob:orders}", {"type": "Forged"}),
        "DEL": lambda: alice.delete("{bob:orders}"),
        "UNLINK": lambda: alice.unlink("bob:dedupe:1"),
        "EVAL": lambda: alice.eval("return redis.call('DEL', KEYS[1])", 1, "{bob:orders}"),
        "FLUSHALL": alice.flushall,
        "CLIENT PAUSE": lambda: alice.execute_command("CLIENT", "PAUSE", 1000),
    }
    for command, call in denied.items():
        with pytest.raises(redis.exceptions.NoPermissionError):
            call()
        assert bob.xlen("{bob:orders}") == 1, command
    assert bob.get("bob:dedupe:1") == "1"
    alice.xadd("{alice:orders}", {"type": "OrderPlaced"})  # her own namespace works
    alice.set("{alice-g0123abcd-c0:orders}", "1")  # and her grading runs' keys
    alice.close()
    bob.close()


def test_acl_learner_may_only_append_to_their_own_progress(acl_room):
    """The progress: XADD to one's own stream only; no read, delete, trim of anyone's."""
    handle, urls = acl_room
    alice = _as(urls["alice"])
    admin = handle.client()
    workshop.record_lesson(admin, learner="bob", lesson="03")
    bob_progress = workshop.progress_key("bob")
    own = workshop.progress_key("alice")
    alice.xadd(own, {"type": "x"})  # appending to her own stream is allowed
    for call in (
        lambda: alice.xadd(bob_progress, {"type": "forged"}),
        lambda: alice.xrange(bob_progress),
        lambda: alice.xdel(bob_progress, "0-1"),
        lambda: alice.xtrim(bob_progress, maxlen=0),
        lambda: alice.delete(bob_progress),
        lambda: alice.xrange(own),
        lambda: alice.delete(own),
    ):
        with pytest.raises(redis.exceptions.NoPermissionError):
            call()
    assert admin.xlen(bob_progress) == 1
    assert admin.xlen(own) == 1
    alice.close()
    admin.close()


def test_instructor_commands_need_the_instructors_credentials(acl_room, capsys):
    """status, reset, forget and add with a learner's URL fail in one line naming the fix."""
    _, urls = acl_room
    for argv in (
        ["workshop", "status", "--room", urls["alice"]],
        ["workshop", "reset", "--learner", "bob", "--room", urls["alice"]],
        ["workshop", "forget", "bob", "--room", urls["alice"]],
        ["workshop", "add", "mallory", "--room", urls["alice"]],
    ):
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "instructor's credentials" in err
        assert urls["alice"].split("@")[0].split(":")[-1] not in err  # no password echoed


@pytest.mark.usefixtures("state")
def test_a_learner_with_an_acl_url_runs_a_lesson_and_records_it_passed(acl_room, monkeypatch):
    """Setup B with ACL users: a lesson's setup and last cell work and reach the progress."""
    handle, urls = acl_room
    monkeypatch.setenv("REDIS_URL", urls["alice"])
    monkeypatch.setenv("EVENTLAB_NAMESPACE", "alice")
    lesson = course.setup("01", quiet=True)
    lesson.client.xadd(lesson.key("orders"), {"type": "OrderPlaced"})
    done = lesson.done(quiet=True)
    assert done is not None
    assert done.error is None, done.error
    admin = handle.client()
    [row] = workshop.status(admin)
    assert (row.learner, row.started, row.passed) == ("alice", ("01",), ("01",))
    admin.close()


@pytest.mark.usefixtures("state")
def test_join_refuses_an_acl_url_made_for_another_name(acl_room, capsys):
    """The ACL user name is the learner's claim: joining as someone else is refused."""
    _, urls = acl_room
    assert cli.main(["workshop", "join", "bob", "--room", urls["alice"]]) == 2
    assert "logs in as 'alice', not 'bob'" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["eventlab", "EventLab", "LAB", "Lab"])
def test_reserved_names_are_refused_in_any_case_also_from_the_env(name, monkeypatch):
    """EVENTLAB_NAMESPACE and join refuse 'eventlab' and 'lab' in any letter case."""
    monkeypatch.setenv("EVENTLAB_NAMESPACE", name)
    with pytest.raises(EventlabError, match="reserved"):
        streams.namespace()
    with pytest.raises(workshop.WorkshopError, match="reserved"):
        workshop.join(name)


def test_plain_lab_stays_the_solo_default(monkeypatch):
    """EVENTLAB_NAMESPACE=lab is the solo namespace, not a reserved-name error."""
    monkeypatch.setenv("EVENTLAB_NAMESPACE", "lab")
    assert streams.namespace() == "lab"
    assert workshop.learner() is None


def test_a_taken_name_is_refused_from_another_checkout(broker, client, tmp_path, monkeypatch):
    """Two checkouts joining as alice (or ALICE): the second is refused until alice is forgotten."""
    monkeypatch.setenv("REDIS_URL", broker.url)
    first, second = tmp_path / "one", tmp_path / "two"
    assert cli.main(["--state", str(first), "workshop", "join", "alice"]) == 0
    assert cli.main(["--state", str(first), "workshop", "join", "alice"]) == 0  # same seat: fine
    for name in ("alice", "ALICE"):
        assert cli.main(["--state", str(second), "workshop", "join", name]) == 2
    assert workshop.joined(state=second) is None
    assert workshop.forget(client, "alice") == 2  # two joined events
    assert cli.main(["--state", str(second), "workshop", "join", "alice"]) == 0


def test_join_room_saves_the_room_privately_and_leave_forgets_it(broker, tmp_path):
    """Join --room writes the URL in a 0600 file that room_url() reads; leave removes it."""
    url = f"redis://:pw-x@127.0.0.1:{broker.port}/0"
    folder = tmp_path / "seat"
    workshop.join("dana", room=url, state=folder)
    room = folder / workshop.ROOM_FILE
    assert stat.S_IMODE(room.stat().st_mode) == 0o600
    assert workshop.room_url(state=folder) == url
    assert workshop.leave(state=folder)
    assert workshop.room_url(state=folder) is None


def test_status_without_a_room_refuses_and_starts_no_broker(tmp_path, capsys):
    """No room URL anywhere: status names the URL it needs and starts no local broker."""
    folder = tmp_path / "instructor"
    assert cli.main(["--state", str(folder), "workshop", "status"]) == 2
    err = capsys.readouterr().err
    assert "--room" in err
    assert workshop.WORKSHOP_URL_ENV in err
    assert broker_mod.current(state=folder) is None


def test_status_watch_refreshes_and_forget_removes_one_learner(client, broker, capsys):
    """--watch prints a fresh view each round; forget drops one learner; unknown is an error."""
    for name in ("alice", "test-seat"):
        workshop.record_lesson(client, learner=name, lesson="00")
    argv = ["workshop", "status", "--room", broker.url, "--watch", "0.01", "--rounds", "2"]
    assert cli.main(argv) == 0
    assert capsys.readouterr().out.count("2 learner(s)") == 2
    assert cli.main(["workshop", "forget", "test-seat", "--room", broker.url]) == 0
    assert cli.main(["workshop", "forget", "nobody", "--room", broker.url]) == 2
    assert "no learner 'nobody'" in capsys.readouterr().err
    assert [r.learner for r in workshop.status(client)] == ["alice"]


def test_reset_flags_that_conflict_are_refused_and_setup_a_is_explained(client, broker, capsys):
    """--learner with --all is refused; a reset finding no keys says whose brokers hold them."""
    workshop.record_lesson(client, learner="alice", lesson="00")
    with pytest.raises(SystemExit):
        cli.main(["workshop", "reset", "--learner", "alice", "--all", "--room", broker.url])
    assert cli.main(["workshop", "reset", "--learner", "alice", "--room", broker.url]) == 0
    out = capsys.readouterr().out
    assert "0 key(s) deleted" in out
    assert "own broker, theirs to reset" in out


def test_doctor_tests_the_room_url(fresh_broker, tmp_path, monkeypatch):
    """doctor: [FAIL] on a wrong room password (named fix), [OK] with the version on a right one."""
    handle = fresh_broker()
    admin = handle.client()
    admin.config_set("requirepass", "right-pw")
    monkeypatch.setenv("EVENTLAB_STATE", str(tmp_path / "seat"))
    monkeypatch.setenv("EVENTLAB_NAMESPACE", "alice")
    try:
        bad = f"redis://:wrong-pw@127.0.0.1:{handle.port}/0"
        monkeypatch.setenv(workshop.WORKSHOP_URL_ENV, bad)
        [room] = [c for c in doctor.run() if c.name == "workshop room"]
        assert not room.ok
        assert "refused the password" in room.detail
        assert "wrong-pw" not in room.line()
        monkeypatch.setenv(workshop.WORKSHOP_URL_ENV, bad.replace("wrong-pw", "right-pw"))
        [room] = [c for c in doctor.run() if c.name == "workshop room"]
        assert room.ok, room.line()
        assert handle.version in room.detail
        assert "you are 'alice'" in room.detail
    finally:
        authed = redis.Redis(port=handle.port, password="right-pw")  # noqa: S106 - test broker
        authed.config_set("requirepass", "")
        authed.close()
        admin.close()
        broker_mod.down(state=tmp_path / "seat")


def test_no_lesson_can_pause_restart_or_flush_a_redis_url_broker(broker, client, monkeypatch):
    """On a REDIS_URL broker, the pause button's call and lesson 11's scenarios refuse at once."""
    client.set("room:keep", "1")
    monkeypatch.setenv("REDIS_URL", broker.url)
    shared = broker_mod.up()
    with pytest.raises(faults.FaultError, match="eventlab manages"):
        faults.pause_broker(shared, 3.0)  # what the dashboard's Pause button calls
    with pytest.raises(broker_mod.BrokerError, match="eventlab manages"):
        shared.pause(3.0)
    with pytest.raises(EventlabError, match="eventlab manages") as refused:
        scenarios.kill9_rdb_vs_aof(seed=11)  # lesson 11's flush cell
    assert "\n" not in str(refused.value)
    assert shared.ping(timeout=0.5)  # never paused
    assert client.get("room:keep") == "1"  # never flushed


def test_status_json_shows_passed_started_best_latest_and_failing(client, broker, capsys):
    """--json: lessons passed vs started and, per lab, best/latest/attempts/failing."""
    workshop.record_lesson(client, learner="carol", lesson="03")
    workshop.record_lesson(client, learner="carol", lesson="02", passed=True)
    for score, failed in ((6, ["a"]), (2, ["a", "b", "c"])):
        workshop.record_score(
            client, learner="carol", lab="03-x", score=score, max_score=8, failed=failed
        )
    assert cli.main(["workshop", "status", "--json", "--room", broker.url]) == 0
    [row] = json.loads(capsys.readouterr().out)["learners"]
    assert row["lessons_started"] == ["02", "03"]
    assert row["lessons_passed"] == ["02"]
    lab = row["labs"]["03-x"]
    assert (lab["best"], lab["latest"], lab["attempts"], lab["failing"]) == (
        6.0,
        2.0,
        2,
        ["a", "b", "c"],
    )
    assert row["last_seen"]
