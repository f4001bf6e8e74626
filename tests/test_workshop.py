"""Workshop mode on a real broker: namespaces keep learners apart, the instructor sees progress."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from eventlab import broker as broker_mod
from eventlab import cli, consumer, course, doctor, grading, processes, streams, workshop
from eventlab._errors import EventlabError
from eventlab.envelope import Event
from tests import _workshop_learners as learners

LEARNERS = 30
ANY_IPV4 = "0.0.0.0"  # noqa: S104 - a CONFIG reply to judge, never bound
SEED = 9


# conftest.py switches the saved-name lookup off for every test; these tests need it.
_JOINED_NAMESPACE = streams._joined_namespace


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private state folder whose saved name streams.namespace() reads, as in a workshop."""
    folder = tmp_path / "state"
    monkeypatch.setenv("EVENTLAB_STATE", str(folder))
    monkeypatch.setattr(streams, "_joined_namespace", _JOINED_NAMESPACE)
    return folder


def _keys(client) -> list[str]:
    return sorted(str(k) for k in client.scan_iter(count=1000))


# -- the learner's namespace --------------------------------------------------------


def test_join_saves_the_namespace_that_streams_use(state, monkeypatch):
    """After join, stream keys use the learner's name; the env var wins; leave goes back to lab."""
    assert streams.namespace() == "lab"
    path = workshop.join("alice")
    assert path == state / "namespace"
    assert workshop.joined() == "alice"
    assert streams.namespace() == "alice"
    assert streams.stream_key("orders") == "{alice:orders}"
    assert workshop.learner() == "alice"
    monkeypatch.setenv("EVENTLAB_NAMESPACE", "bob")
    assert streams.namespace() == "bob"
    monkeypatch.delenv("EVENTLAB_NAMESPACE")
    assert workshop.leave() is True
    assert streams.namespace() == "lab"
    assert workshop.learner() is None
    assert workshop.leave() is False


@pytest.mark.parametrize("name", ["", "a b", "al:ce", "x" * 65, "lab", "eventlab", "{orders}"])
def test_join_refuses_names_that_could_collide(state, name):
    """A name with separators, spaces, hash tags or a reserved word is refused and nothing saved."""
    with pytest.raises(workshop.WorkshopError):
        workshop.join(name)
    assert not (state / "namespace").exists()


@pytest.mark.usefixtures("state")
def test_env_var_and_joined_name_reach_a_separate_process(broker, client, tmp_path):
    """Real processes publish under EVENTLAB_NAMESPACE or the joined name, into their own keys."""
    joined_state = tmp_path / "joined"
    workshop.join("carol", state=joined_state)
    script = (
        "from eventlab import broker, streams\n"
        "from eventlab.envelope import Event\n"
        "c = broker.connect()\n"
        "streams.publish(c, streams.stream_key('orders'),"
        " Event(type='OrderPlaced', source='orders', data={'by': streams.namespace()}))\n"
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith("EVENTLAB_")}
    base["REDIS_URL"] = broker.url
    envs = [
        {**base, "EVENTLAB_NAMESPACE": "alice", "EVENTLAB_STATE": str(tmp_path / "none")},
        {**base, "EVENTLAB_NAMESPACE": "bob", "EVENTLAB_STATE": str(joined_state)},
        {**base, "EVENTLAB_STATE": str(joined_state)},
    ]
    procs = [subprocess.Popen([sys.executable, "-c", script], env=env) for env in envs]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0]
    assert _keys(client) == ["{alice:orders}", "{bob:orders}", "{carol:orders}"]
    for name in ("alice", "bob", "carol"):
        [(_, event)] = streams.replay(client, f"{{{name}:orders}}")
        assert event.data == {"by": name}


# -- thirty learners on one broker ------------------------------------------------


PROCESSES = 3  # 30 interpreters would not fit a 2-core CI machine; 10 learners each


def test_thirty_learners_share_one_broker_without_cross_talk(broker, client, tmp_path):
    """30 learners in 3 processes, same stream/group/consumer names: each sees only its own."""
    rng = random.Random(SEED)
    names = [f"learner-{i:02d}" for i in range(LEARNERS)]
    counts = {name: rng.randint(5, 40) for name in names}
    go = tmp_path / "go"
    procs = []
    try:
        for index in range(PROCESSES):
            group = names[index::PROCESSES]
            env = {
                "REDIS_URL": broker.url,
                "EVENTLAB_NAMESPACE": group[0],  # this learner's keys come from the env var
                "EVENTLAB_STATE": str(tmp_path / "no-joined-name"),
            }
            procs.append(
                processes.spawn(
                    "tests._workshop_learners:main",
                    args=[broker.url, str(go), *(f"{n}:{counts[n]}" for n in group)],
                    env=env,
                    name=f"room-{index}",
                )
            )
        for proc in procs:
            proc.wait_ready(timeout=60)
        go.touch()
        for proc in procs:
            status = proc.wait(timeout=120)
            assert status == 0, f"{proc.name} exited {status}:\n{proc.log()}"
    finally:
        for proc in procs:
            proc.kill()

    for name in names:
        stream = f"{{{name}:orders}}"
        published = [Event.from_fields(f) for _, f in client.xrange(stream) if "junk" not in f]
        assert {e.data["who"] for e in published} == {name}
        numbers = [e.data["n"] for e in published]
        expected = [
            *range(counts[name]),
            *(n for n in range(counts[name]) if learners.is_duplicated(n)),
        ]
        assert numbers == expected
        poison = {e.id for e in published if learners.is_poison(e.data["n"])}
        # Dedupe: a duplicated order was billed once; poison was never billed.
        assert client.hgetall(f"{stream}:billed") == {
            f"order-{n}": "1" for n in range(counts[name]) if not learners.is_poison(n)
        }
        assert client.smembers(f"{stream}:who") == {name}
        dead = consumer.dead_letters(client, stream)
        assert {d.event_id for d in dead if d.event_id} == poison
        assert len([d for d in dead if d.event_id]) == len(poison)
        [junk] = [d for d in dead if not d.event_id]
        assert junk.fields == {"junk": name}
        assert {(d.group, d.stream) for d in dead} == {("billing", stream)}
        assert streams.pending_summary(client, stream, "billing").count == 0

    # Every key belongs to exactly one learner, except the instructor's progress stream.
    keys = _keys(client)
    for key in keys:
        owners = [n for n in names if key.startswith((f"{n}:", f"{{{n}:"))]
        assert len(owners) == 1 or key.startswith(f"{workshop.WORKSHOP_STREAM}:"), key
    for name in names[:PROCESSES]:  # the env-var learners wrote under their own names
        assert f"{{{name}:orders}}" in keys

    rows = {row.learner: row for row in workshop.status(client)}
    assert sorted(rows) == names
    for name in names:
        assert rows[name].lessons == (learners.LESSON,)
        score = rows[name].scores[learners.LAB]
        billed = sum(1 for n in range(counts[name]) if not learners.is_poison(n))
        assert (score.score, score.max_score, score.attempts) == (billed, counts[name], 1)


# -- progress, status, reset ---------------------------------------------------


def test_status_keeps_best_and_latest_score_and_counts_attempts(client):
    """Re-grading keeps the best and the latest score, counts attempts; stray entries skipped."""
    workshop.record_lesson(client, learner="alice", lesson="00-setup-check")
    workshop.record_lesson(client, learner="alice", lesson="03-at-least-once-and-idempotency")
    workshop.record_lesson(client, learner="alice", lesson="00-setup-check")
    workshop.record_score(
        client, learner="alice", lab="03-idempotent-consumer", score=4, max_score=10
    )
    workshop.record_score(
        client, learner="alice", lab="03-idempotent-consumer", score=10, max_score=10
    )
    workshop.record_score(
        client,
        learner="alice",
        lab="03-idempotent-consumer",
        score=2,
        max_score=10,
        failed=["crash_before_ack_no_double_effect"],
    )
    workshop.record_lesson(client, learner="bob", lesson="00-setup-check")
    client.xadd(workshop.progress_key("alice"), {"junk": "from redis-cli"})
    rows = workshop.status(client)
    assert [r.learner for r in rows] == ["alice", "bob"]
    alice, bob = rows
    assert alice.lessons == ("00-setup-check", "03-at-least-once-and-idempotency")
    score = alice.scores["03-idempotent-consumer"]
    assert (score.best, score.latest, score.max_score, score.attempts) == (10.0, 2.0, 10.0, 3)
    assert score.failing == ("crash_before_ack_no_double_effect",)
    assert bob.scores == {}
    lab = alice.as_dict()["labs"]["03-idempotent-consumer"]
    assert (lab["best"], lab["latest"], lab["max"]) == (10.0, 2.0, 10.0)
    assert lab["failing"] == ["crash_before_ack_no_double_effect"]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"learner": "alice", "lab": "", "score": 1, "max_score": 2}, ValueError),
        ({"learner": "alice", "lab": "L03", "score": 3, "max_score": 2}, ValueError),
        ({"learner": "alice", "lab": "L03", "score": -1, "max_score": 2}, ValueError),
        ({"learner": "al ice", "lab": "L03", "score": 1, "max_score": 2}, workshop.WorkshopError),
    ],
)
def test_record_score_refuses_nonsense(client, kwargs, error):
    """A score outside 0..max, an empty lab or a bad learner name is refused, nothing written."""
    with pytest.raises(error):
        workshop.record_score(client, **kwargs)
    assert _keys(client) == []


def test_reset_deletes_one_learner_or_the_room(client):
    """Reset deletes one learner's keys or all, progress only if asked; misuse is refused."""
    for name in ("alice", "alicea", "bob"):
        key = streams.stream_key("orders", namespace_=name)
        client.xadd(key, {"a": "1"})
        client.set(f"{name}:dedupe:1", "1")
        workshop.record_lesson(client, learner=name, lesson="01-events-not-state")
    progress = sorted(workshop.progress_key(n) for n in ("alice", "alicea", "bob"))
    assert workshop.reset(client, learner="alice").keys == 2
    assert _keys(client) == sorted(
        ["alicea:dedupe:1", "{alicea:orders}", "bob:dedupe:1", "{bob:orders}", *progress]
    )
    with pytest.raises(workshop.WorkshopError, match="not both and not neither"):
        workshop.reset(client)
    with pytest.raises(workshop.WorkshopError, match="not both and not neither"):
        workshop.reset(client, learner="bob", everyone=True)
    with pytest.raises(workshop.WorkshopError, match="no learner 'zed'"):
        workshop.reset(client, learner="zed")
    report = workshop.reset(client, everyone=True)
    assert (report.keys, report.learners) == (4, ("alice", "alicea", "bob"))
    assert _keys(client) == progress
    assert workshop.reset(client, learner="bob", progress=True).progress == 1
    assert workshop.reset(client, everyone=True, progress=True).progress == 2
    assert _keys(client) == []


def test_reset_of_a_learner_removes_what_their_crashed_grading_runs_left(client):
    """A grade killed half-way leaves alice-g<tag>-* keys; resetting alice deletes only those."""
    run = grading.run_namespace("alice")
    assert re.fullmatch(r"alice-g[0-9a-f]{8}", run), run
    other_run = grading.run_namespace("bob")
    leftovers = [
        f"{{{run}-c0:orders}}",
        f"{{{run}-c1:orders}}:dlq",
        f"{run}-boot:{{probe}}",  # an older release's spelling: found too
    ]
    kept = [
        f"{{{other_run}-c0:orders}}",  # bob's grading run
        "{alice-gary:orders}",  # another learner whose name starts like alice's runs
        "{alice-g0123abcd:orders}",  # a name with the tag but not a run's -c<n> / -boot
        "{alice-g0123abc-c0:orders}",  # seven hex digits: not a tag run_namespace makes
    ]
    for key in [*leftovers, *kept, "{alice:orders}"]:
        client.xadd(key, {"a": "1"})
    for name in ("alice", "bob"):
        workshop.record_lesson(client, learner=name, lesson="03")
    assert workshop.reset(client, learner="alice").keys == len(leftovers) + 1
    progress = [workshop.progress_key("alice"), workshop.progress_key("bob")]
    assert _keys(client) == sorted([*kept, *progress])
    assert workshop.reset(client, learner="bob").keys == 1
    assert _keys(client) == sorted([*kept[1:], *progress])


@pytest.mark.usefixtures("state")
def test_join_refuses_a_name_that_reset_would_take_for_a_grading_run():
    """A learner cannot be named like a grading run of someone else (alice-g<8 hex>-c0)."""
    run = grading.run_namespace("alice")
    with pytest.raises(workshop.WorkshopError, match="grading run"):
        workshop.join(f"{run}-c0")
    assert workshop.join("alice-gary").name == "namespace"


# -- the command, and security ------------------------------------------------------


@pytest.fixture
def room(fresh_broker, monkeypatch):
    """A private broker that requires a password, named by REDIS_URL (as in a workshop)."""
    handle = fresh_broker()
    password = "s3cret-Room-pw"  # noqa: S105 - a test password for a throwaway broker
    admin = handle.client()
    admin.config_set("requirepass", password)
    url = f"redis://:{password}@127.0.0.1:{handle.port}/0"
    monkeypatch.setenv("REDIS_URL", url)
    yield url, password
    # Drop the password again so the fixture can shut the broker down quickly.
    authed = broker_mod.Broker(url=url, managed=False, version="").client()
    authed.config_set("requirepass", "")
    authed.close()
    admin.close()


@pytest.mark.usefixtures("state")
def test_cli_join_and_status_on_a_password_broker_never_print_the_password(room, capsys):
    """Join and status work through REDIS_URL with a password and print it only as ***."""
    url, password = room
    assert cli.main(["workshop", "join", "alice"]) == 0
    assert cli.main(["workshop", "join", "bob"]) == 0
    client = broker_mod.Broker(url=url, managed=False, version="").client()
    workshop.record_score(client, learner="bob", lab="05-backpressure", score=6, max_score=8)
    client.close()
    assert cli.main(["workshop", "status"]) == 0
    assert cli.main(["workshop", "status", "--json"]) == 0
    out, err = capsys.readouterr()
    assert password not in out + err
    assert "redis://:***@127.0.0.1" in out
    assert "joined as 'bob'" in out
    assert "lab 05-backpressure: best 6/8, latest 6/8, 1 attempt(s)" in out
    report = json.loads(out.strip().splitlines()[-1])
    assert [r["learner"] for r in report["learners"]] == ["alice", "bob"]
    assert report["learners"][1]["labs"]["05-backpressure"]["latest"] == 6.0
    assert workshop.joined() == "bob"


@pytest.mark.usefixtures("state")
def test_wrong_password_is_reported_without_echoing_it(room, monkeypatch, capsys):
    """A wrong password fails with a one-line error that shows neither password."""
    url, password = room
    monkeypatch.setenv("REDIS_URL", url.replace(password, "not-the-pw"))
    assert cli.main(["workshop", "status"]) == 2
    out, err = capsys.readouterr()
    assert "not-the-pw" not in out + err
    assert password not in out + err
    assert "***" in err


@pytest.mark.parametrize(
    ("url", "refused"),
    [
        ("redis://10.255.255.1:6379/0", True),
        ("redis://:pw@10.255.255.1:6379/0", False),
        ("redis://127.0.0.1:6379/0", False),
        ("redis://localhost:6379/0", False),
    ],
)
def test_room_url_needs_a_password_off_loopback(url, refused):
    """A broker other machines can reach is refused without a password; loopback needs none."""
    if refused:
        with pytest.raises(workshop.WorkshopError, match="no password"):
            workshop.check_room_url(url)
    else:
        workshop.check_room_url(url)


@pytest.mark.usefixtures("state")
def test_join_refuses_a_remote_broker_without_password(monkeypatch, capsys):
    """`workshop join` against a remote broker without a password exits 2 and saves nothing."""
    monkeypatch.setenv("REDIS_URL", "redis://10.255.255.1:6379/0")
    assert cli.main(["workshop", "join", "alice"]) == 2
    assert "no password" in capsys.readouterr().err
    assert workshop.joined() is None


def test_a_lesson_refuses_a_remote_room_broker_without_password(monkeypatch):
    """course.setup in a workshop stops at once on a passwordless off-machine REDIS_URL."""
    monkeypatch.setenv("EVENTLAB_NAMESPACE", "alice")
    monkeypatch.setenv("REDIS_URL", "redis://10.255.255.1:6379/0")  # never contacted
    with pytest.raises(EventlabError) as caught:
        course.setup("00", quiet=True)
    message = str(caught.value)
    assert "\n" not in message
    assert "no password" in message
    assert "fix: ask the instructor for the room URL with its password" in message
    monkeypatch.setenv("REDIS_URL", "redis://:pw@10.255.255.1:6379/0")
    workshop.check_learner_url()  # with a password: allowed
    monkeypatch.delenv("EVENTLAB_NAMESPACE")
    monkeypatch.setenv("REDIS_URL", "redis://10.255.255.1:6379/0")
    workshop.check_learner_url()  # solo (namespace 'lab'): not a workshop, nothing to refuse


def test_a_lesson_in_a_workshop_runs_on_a_loopback_broker_without_password(
    broker, client, monkeypatch
):
    """On a loopback broker a workshop lesson needs no password: setup connects and checks in."""
    monkeypatch.setenv("EVENTLAB_NAMESPACE", "alice")
    monkeypatch.setenv("REDIS_URL", broker.url)
    lesson = course.setup("00", quiet=True)
    try:
        assert lesson.key("orders") == "{alice:l00-orders}"
    finally:
        lesson.client.close()
    [row] = workshop.status(client)
    assert (row.learner, row.lessons) == ("alice", ("00",))


@pytest.mark.parametrize(
    ("url", "warned"),
    [
        ("redis://10.255.255.1:6379/0", True),
        ("redis://192.168.1.20:6379/0", True),
        ("redis://:pw@10.255.255.1:6379/0", False),
        ("redis://127.0.0.1:6379/0", False),
        ("redis://localhost:6379/0", False),
    ],
)
def test_doctor_warns_on_a_broker_reachable_without_auth(url, warned):
    """The doctor warns when a broker is on a non-loopback address and REDIS_URL has no password."""
    check = doctor._exposed_without_auth(url)
    if warned:
        assert check is not None
        assert check.ok
        assert check.warning
        assert check.line().startswith("[WARN] broker auth")
    else:
        assert check is None


@pytest.mark.parametrize(
    ("bind", "requirepass", "exposed"),
    [
        (ANY_IPV4, "", ANY_IPV4),
        ("* -::*", "", "* ::*"),
        ("", "", "*"),  # no bind directive: every interface
        ("127.0.0.1 10.0.0.5", "", "10.0.0.5"),
        ("127.0.0.1 -192.168.1.20", "", "192.168.1.20"),
        ("localhost", "", "localhost"),  # not an address: counted as reachable
        (ANY_IPV4, "s3cret", None),
        ("127.0.0.1 -::1", "", None),
        ("127.0.0.1", "", None),
    ],
)
def test_doctor_judges_the_servers_bind_and_password(bind, requirepass, exposed):
    """Listening beyond loopback without requirepass warns, naming the reachable addresses."""
    check = doctor._server_exposed(bind, requirepass)
    if exposed is None:
        assert check is None
    else:
        assert check is not None
        assert check.warning
        assert check.ok
        assert f"listens on {exposed} (not only loopback) without a password" in check.line()
        assert check.line().startswith("[WARN] broker auth")


@pytest.mark.parametrize("kind", ["valkey", "redis"])
def test_doctor_reads_bind_and_password_from_a_real_server(fresh_broker, kind, monkeypatch):
    """CONFIG GET replies feed the decision; a user without CONFIG rights gives no verdict."""
    handle = fresh_broker(kind=kind)
    admin = handle.client()
    try:
        assert doctor._server_settings(admin) == ("127.0.0.1", "")
        admin.config_set("bind", "127.0.0.1 -::1")  # still loopback only
        assert doctor._server_settings(admin) == ("127.0.0.1 -::1", "")
        assert doctor._server_exposed(*doctor._server_settings(admin)) is None
        monkeypatch.setenv("REDIS_URL", handle.url)
        assert "broker auth" not in [c.name for c in doctor.run()]
        admin.acl_setuser(
            "viewer", enabled=True, nopass=True, keys=["*"], commands=["+@all", "-config"]
        )
        viewer = redis.Redis(
            port=handle.port,
            username="viewer",
            password="x",  # noqa: S106 - nopass user: any password is accepted
            decode_responses=True,
        )
        try:
            assert viewer.ping()
            assert doctor._server_settings(viewer) is None  # CONFIG forbidden: tolerated
        finally:
            viewer.close()
    finally:
        admin.close()


def test_doctor_on_the_loopback_managed_broker_raises_no_auth_warning(broker, monkeypatch):
    """The managed broker listens on loopback only, so the doctor has nothing to warn about."""
    client = broker.client()
    try:
        assert client.config_get("bind")["bind"].split()[0] == "127.0.0.1"
    finally:
        client.close()
    monkeypatch.setenv("REDIS_URL", broker.url)
    checks = doctor.run()
    names = [c.name for c in checks]
    assert "broker" in names
    assert "broker auth" not in names


# -- progress on a separate room broker (learners on their own brokers) -------------------


@pytest.mark.usefixtures("state")
def test_progress_goes_to_the_room_when_workshop_url_is_set(
    room, broker, client, monkeypatch, capsys
):
    """With EVENTLAB_WORKSHOP_URL, scores land on the room broker, not the learner's own."""
    url, password = room
    monkeypatch.setenv("REDIS_URL", broker.url)  # the learner works on their own broker ...
    monkeypatch.setenv(workshop.WORKSHOP_URL_ENV, url)  # ... and reports to the room
    assert cli.main(["workshop", "join", "dana"]) == 0
    workshop.record_score(
        client, learner="dana", lab="03-idempotent-consumer", score=7, max_score=10
    )
    workshop.record_lesson(client, learner="dana", lesson="03-at-least-once-and-idempotency")
    assert client.exists(workshop.progress_key("dana")) == 0  # nothing on the learner's broker
    assert cli.main(["workshop", "status", "--json"]) == 0
    out, err = capsys.readouterr()
    assert password not in out + err
    [row] = json.loads(out.strip().splitlines()[-1])["learners"]
    assert row["learner"] == "dana"
    assert row["lessons_started"] == ["03-at-least-once-and-idempotency"]
    assert row["labs"]["03-idempotent-consumer"]["latest"] == 7.0


def test_an_unreachable_room_is_a_clear_error_without_the_password(client, monkeypatch):
    """A room URL nobody answers on fails fast with the URL redacted and a fix."""
    port = broker_mod._free_port(None, wait=0)  # nothing listens here
    monkeypatch.setenv(workshop.WORKSHOP_URL_ENV, f"redis://:hush-pw@127.0.0.1:{port}/0")
    with pytest.raises(workshop.WorkshopError) as caught:
        workshop.record_score(client, learner="erin", lab="05-backpressure", score=1, max_score=2)
    assert "hush-pw" not in str(caught.value)
    assert "***" in str(caught.value)
    assert workshop.WORKSHOP_URL_ENV in caught.value.fix


def test_a_remote_room_without_password_is_refused_before_connecting(client, monkeypatch):
    """EVENTLAB_WORKSHOP_URL off loopback without a password is refused like REDIS_URL."""
    monkeypatch.setenv(workshop.WORKSHOP_URL_ENV, "redis://10.255.255.1:6379/0")
    with pytest.raises(workshop.WorkshopError, match="no password"):
        workshop.record_lesson(client, learner="erin", lesson="00-setup-check")


@pytest.mark.usefixtures("state")
def test_checkin_records_only_inside_a_workshop(client, monkeypatch):
    """Checkin: nothing as 'lab', a learner's lesson recorded, a dead room reported in a line."""
    assert workshop.checkin(client, lesson="01-events-not-state") is None
    assert _keys(client) == []
    workshop.join("frank")
    assert workshop.checkin(client, lesson="01-events-not-state") is not None
    [row] = workshop.status(client)
    assert (row.learner, row.lessons) == ("frank", ("01-events-not-state",))
    port = broker_mod._free_port(None, wait=0)
    monkeypatch.setenv(workshop.WORKSHOP_URL_ENV, f"redis://:pw@127.0.0.1:{port}/0")
    dead = workshop.checkin(client, lesson="02-consumers-and-groups")
    assert dead is not None
    assert dead.entry is None
    assert "progress NOT recorded for 'frank'" in dead.line()
    assert "pw@" not in dead.line()


@pytest.mark.usefixtures("state")
def test_join_says_when_the_env_var_overrides_the_saved_name(broker, monkeypatch, capsys):
    """Joining while EVENTLAB_NAMESPACE names someone else tells the learner which name wins."""
    monkeypatch.setenv("REDIS_URL", broker.url)
    monkeypatch.setenv("EVENTLAB_NAMESPACE", "old-name")
    assert cli.main(["workshop", "join", "gina"]) == 0
    assert "EVENTLAB_NAMESPACE=old-name is set here and wins" in capsys.readouterr().out
    assert workshop.joined() == "gina"
    assert streams.namespace() == "old-name"
