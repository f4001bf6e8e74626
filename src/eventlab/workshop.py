"""Workshop mode: many learners, one room broker, and an instructor's view of who is stuck.

Each learner works in a namespace of their own (``eventlab workshop join NAME``,
or ``EVENTLAB_NAMESPACE``), so every key the kit writes starts with ``NAME:``.
Progress goes to the *room broker*: the URL given to ``join --room URL`` (saved
with the name, so kernels started before or after the join pick it up), or
``EVENTLAB_WORKSHOP_URL``, else the broker the lessons run on. Each learner
appends to a progress stream of their own, ``eventlab:{workshop}:NAME``: a
lesson started (the setup cell, :func:`checkin`), a lesson passed (its last
cell, :meth:`eventlab.course.Lesson.done`), a lab score with the names of the
failing checks (:func:`record_score`, called by the grader).
``eventlab workshop status`` folds every learner's stream into one row.

Isolation: on a room broker the instructor can give every learner a server
ACL user of their own (:func:`add`): that user may use only keys under the
learner's namespace (and their grading runs) and may only ``XADD`` to their own
progress stream, so no learner can read, change or delete another's keys or
progress; the instructor's commands (``status``, ``forget``, ``reset``,
``add``) need the instructor's credentials. Without ACL users, one shared
password lets every learner touch everything: namespaces are then only a
naming convention.

A room broker is reachable from other machines, so it must have a password; it
travels only inside URLs and is never printed (:func:`eventlab.broker.redact`).

Introduced in ``docs/instructor.md``; lesson 00 shows where progress goes.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from eventlab import _env, broker, streams
from eventlab._errors import EventlabError
from eventlab.envelope import EnvelopeError, Event

__all__ = [
    "NAMESPACE_FILE",
    "RESERVED_NAMES",
    "ROOM_FILE",
    "WORKSHOP_STREAM",
    "WORKSHOP_URL_ENV",
    "Checkin",
    "Joined",
    "LabScore",
    "LearnerStatus",
    "ResetReport",
    "RoomInfo",
    "WorkshopError",
    "acl_rules",
    "add",
    "check_learner_url",
    "check_room",
    "check_room_url",
    "checkin",
    "forget",
    "format_status",
    "join",
    "join_room",
    "joined",
    "learner",
    "learner_url",
    "leave",
    "progress_key",
    "record_lesson",
    "record_score",
    "reset",
    "room_client",
    "room_url",
    "status",
]

WORKSHOP_STREAM = "eventlab:{workshop}"
"""Prefix of the progress streams: learner ``alice`` appends to ``eventlab:{workshop}:alice``.

Deliberately outside every learner namespace, so resetting a learner's keys
keeps their progress.
"""

WORKSHOP_URL_ENV = _env.WORKSHOP_URL
"""Optional: the room broker that holds the progress streams (wins over ``join --room``)."""

NAMESPACE_FILE = "namespace"
"""File in the state folder that holds the name saved by :func:`join`."""

ROOM_FILE = "room"
"""File in the state folder that holds the room URL saved by :func:`join` (mode 0600)."""

RESERVED_NAMES = frozenset({"lab", "eventlab"})
"""Names no learner may take, in any letter case: the solo default and the kit's own prefix."""

MIN_VERSION = (7, 0)
"""The oldest server the kit runs on (Redis 7.0; Valkey 7.2 and later report 7.x too)."""

_SEAT_FILE = "seat"
_DEFAULT_NAMESPACE = "lab"
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_GRADER_RUN = re.compile(r"-g[0-9a-f]{8}-")  # eventlab.grading.run_namespace + "-c<n>"
_SOURCE = "/eventlab/workshop"
_TYPE_JOINED = "eventlab.workshop.joined"
_TYPE_LESSON = "eventlab.workshop.lesson"
_TYPE_PASSED = "eventlab.workshop.passed"
_TYPE_SCORE = "eventlab.workshop.score"
# One learner writes a few hundred progress events a day; the bound only stops
# a runaway loop from filling the room broker's memory.
_MAXLEN = 10_000


class WorkshopError(EventlabError):
    """A learner name, room URL or workshop stream problem a person can fix."""


# -- records ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LabScore:
    """One lab's grades for one learner.

    Attributes:
        best: The highest score of any grading run.
        latest: The score of the latest run.
        max_score: Points available.
        attempts: How many times the lab was graded.
        failing: Names of the checks the latest run failed.
        time: When the latest run was recorded.
    """

    best: float
    latest: float
    max_score: float
    attempts: int
    failing: tuple[str, ...]
    time: datetime

    @property
    def score(self) -> float:
        """The latest score (kept for code that read ``score`` before best/latest)."""
        return self.latest


@dataclass(frozen=True, slots=True)
class LearnerStatus:
    """What one learner did in the workshop, as the instructor sees it.

    Attributes:
        learner: The learner's namespace.
        started: Lessons whose setup cell ran, sorted.
        passed: Lessons whose last cell ran (a Run All that reached the end), sorted.
        scores: Lab name → its :class:`LabScore`.
        last_seen: Time of the learner's latest progress event.
    """

    learner: str
    started: tuple[str, ...]
    passed: tuple[str, ...] = ()
    scores: dict[str, LabScore] = field(default_factory=dict)
    last_seen: datetime | None = None

    @property
    def lessons(self) -> tuple[str, ...]:
        """Lessons started (kept for code that read ``lessons`` before started/passed)."""
        return self.started

    @property
    def stuck(self) -> tuple[str, ...]:
        """Lessons started and not passed: where the learner may be stuck."""
        return tuple(sorted(set(self.started) - set(self.passed)))

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (used by ``eventlab workshop status --json``)."""
        return {
            "learner": self.learner,
            "lessons_started": list(self.started),
            "lessons_passed": list(self.passed),
            "labs": {
                lab: {
                    "best": s.best,
                    "latest": s.latest,
                    "max": s.max_score,
                    "attempts": s.attempts,
                    "failing": list(s.failing),
                    "time": s.time.isoformat(),
                }
                for lab, s in sorted(self.scores.items())
            },
            "last_seen": self.last_seen.isoformat() if self.last_seen else None,
        }


@dataclass(frozen=True, slots=True)
class Checkin:
    """Where one progress event went, for the line a lesson prints.

    Attributes:
        learner: The learner's name.
        lesson: The lesson id.
        where: The broker that got it (password redacted), or the one that failed.
        room: Whether that broker is a room broker (``join --room`` or
            ``EVENTLAB_WORKSHOP_URL``) rather than the lesson's own broker.
        entry: The stream entry id, or ``None`` when nothing was recorded.
        error: Why nothing was recorded (one line with its fix), else ``None``.
    """

    learner: str
    lesson: str
    where: str
    room: bool
    entry: str | None
    error: str | None = None

    def line(self) -> str:
        """One line saying whether the instructor will see this lesson, and as whom."""
        if self.error is not None:
            return f"workshop: progress NOT recorded for {self.learner!r}: {self.error}"
        if self.room:
            return f"workshop: progress recorded as {self.learner!r} on the room {self.where}"
        return (
            f"workshop: progress recorded as {self.learner!r} on {self.where}, the broker this "
            "lesson runs on (no room URL saved: fix: eventlab workshop join NAME --room URL, "
            "if the instructor gave you one)"
        )


@dataclass(frozen=True, slots=True)
class RoomInfo:
    """A room broker that answered :func:`check_room`.

    Attributes:
        url: The URL, password redacted.
        version: The server's own version (``valkey_version`` on Valkey).
        server: ``redis`` or ``valkey``.
        user: The ACL user the URL logs in as (``default`` without a user name).
    """

    url: str
    version: str
    server: str
    user: str


@dataclass(frozen=True, slots=True)
class Joined:
    """What :func:`join_room` did.

    Attributes:
        name: The learner name now saved.
        where: Where progress goes, for people (passwords redacted).
        path: The file the name was saved in.
    """

    name: str
    where: str
    path: Path


@dataclass(frozen=True, slots=True)
class ResetReport:
    """What :func:`reset` did.

    Attributes:
        learners: The learners reset.
        keys: Keys deleted on the broker.
        progress: Progress streams deleted.
    """

    learners: tuple[str, ...]
    keys: int
    progress: int


# -- names ------------------------------------------------------------------------


def _check_name(name: str, *, joining: bool = False) -> str:
    if not _NAME.match(name):
        raise WorkshopError(
            f"learner name {name!r} must be 1-64 letters, digits, _ . or -",
            fix="choose a name such as 'alice' or 'team-3'",
        )
    if joining and name.lower() in RESERVED_NAMES:
        raise WorkshopError(
            f"learner name {name!r} is reserved ('lab' is the solo default, "
            "'eventlab' holds the room's progress; any letter case)",
            fix="choose your own name, such as 'alice'",
        )
    if joining and _GRADER_RUN.search(name):
        # `workshop reset --learner alice` deletes alice-g<8 hex>-*: a learner
        # named like that would lose their keys with alice's grading runs.
        raise WorkshopError(
            f"learner name {name!r} looks like a grading run's namespace (-g<8 hex digits>-)",
            fix="choose a name without '-g' followed by 8 hex digits and '-'",
        )
    return name


def progress_key(name: str) -> str:
    """Return the progress stream of learner ``name``: ``eventlab:{workshop}:name``."""
    return f"{WORKSHOP_STREAM}:{_check_name(name)}"


# -- the learner's seat: name, room, seat token --------------------------------------


def _private_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by the owner only, from the first byte."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    tmp.replace(path)


def join(
    name: str,
    *,
    room: str | None = None,
    state: str | os.PathLike[str] | None = None,
) -> Path:
    """Save ``name`` (and the ``room`` URL) as this checkout's seat; return the name file.

    :func:`eventlab.streams.namespace` reads the name and :func:`room_url` the
    room on every call, so kernels that were already running pick both up at
    their next cell. The room file holds the password and is created mode 0600.
    An ``EVENTLAB_NAMESPACE`` / ``EVENTLAB_WORKSHOP_URL`` variable still wins.

    Raises:
        WorkshopError: The name is malformed or reserved, or ``room`` names a
            non-loopback broker without a password.
    """
    _check_name(name, joining=True)
    if room is not None:
        check_room_url(room)
    folder = broker.state_dir(state)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / NAMESPACE_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(name + "\n")
    tmp.replace(path)
    if room is not None:
        _private_write(folder / ROOM_FILE, room + "\n")
    return path


def joined(*, state: str | os.PathLike[str] | None = None) -> str | None:
    """Return the name saved by :func:`join`, or ``None``."""
    try:
        value = (broker.state_dir(state) / NAMESPACE_FILE).read_text().strip()
    except OSError:
        return None
    return value or None


def room_url(*, state: str | os.PathLike[str] | None = None) -> str | None:
    """Return the room broker's URL: ``EVENTLAB_WORKSHOP_URL``, else the one saved by ``join``."""
    env = _env.get(_env.WORKSHOP_URL)
    if env:
        return env
    try:
        value = (broker.state_dir(state) / ROOM_FILE).read_text().strip()
    except OSError:
        return None
    return value or None


def leave(*, state: str | os.PathLike[str] | None = None) -> bool:
    """Forget the name and room saved by :func:`join`; return whether a name was saved."""
    folder = broker.state_dir(state)
    path = folder / NAMESPACE_FILE
    existed = path.is_file()
    path.unlink(missing_ok=True)
    (folder / ROOM_FILE).unlink(missing_ok=True)
    return existed


def _seat(state: str | os.PathLike[str] | None = None) -> str:
    """This checkout's seat: a random token made at the first join, sent only as a hash."""
    folder = broker.state_dir(state)
    path = folder / _SEAT_FILE
    try:
        token = path.read_text().strip()
    except OSError:
        token = ""
    if not token:
        token = secrets.token_hex(16)
        folder.mkdir(parents=True, exist_ok=True)
        _private_write(path, token + "\n")
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def learner() -> str | None:
    """Return the current learner (the namespace), or ``None`` outside a workshop."""
    value = streams.namespace()
    return None if value == _DEFAULT_NAMESPACE else value


# -- security ---------------------------------------------------------------------


def check_room_url(url: str) -> None:
    """Refuse a broker that other machines can reach unless ``url`` carries a password.

    Raises:
        WorkshopError: ``url`` names a non-loopback host and has no password.
    """
    broker.check_url(url, name=WORKSHOP_URL_ENV)  # malformed: one line naming the fix
    if broker.exposed_without_password(url) is None:
        return
    raise WorkshopError(
        f"the workshop broker {broker.redact(url)} is on another machine and "
        "its URL has no password",
        fix="ask the instructor for the room URL with its password: redis://:PASSWORD@host:port/0",
    )


def check_learner_url() -> None:
    """In a workshop, refuse a ``REDIS_URL`` on another machine that has no password.

    :func:`eventlab.course.setup` calls this before connecting, so every lesson
    enforces the rule.

    Raises:
        WorkshopError: A workshop namespace is active and ``REDIS_URL`` names a
            non-loopback host without a password.
    """
    url = _env.get(_env.REDIS_URL)
    if url and learner() is not None:
        check_room_url(url)


@contextlib.contextmanager
def room_client(url: str, *, admin: bool = False, node: bool = False) -> Iterator[redis.Redis]:
    """A client on the room broker; connection, password and permission errors name the fix.

    A room on a Redis Cluster gets the cluster client (``ACL SETUSER`` then reaches
    every node: ACL users are per node); ``node`` asks for one node's answers.
    """
    check_room_url(url)
    client = broker.client_for_url(
        url,
        cluster=False if node else None,
        decode_responses=True,
        socket_connect_timeout=3.0,
        socket_timeout=5.0,
        retry=Retry(NoBackoff(), 0),  # a dead room must fail fast, not stall a grade
    )
    try:
        if admin:
            # A learner's ACL user may touch only its own keys: this bare key is nobody's,
            # so NOPERM here means "not the instructor" before anything is half done.
            client.exists(WORKSHOP_STREAM)
        yield client
    except redis.AuthenticationError as exc:
        raise WorkshopError(
            f"the workshop broker {broker.redact(url)} refused the password: {exc}",
            fix="ask the instructor for the current room URL, then "
            "eventlab workshop join NAME --room URL",
        ) from None
    except redis.exceptions.NoPermissionError as exc:
        if admin:
            raise WorkshopError(
                f"this needs the instructor's credentials; {broker.redact(url)} logs in as a "
                f"learner: {exc}",
                fix="pass --room with the room's admin URL (the password in the room's "
                "password file)",
            ) from None
        raise WorkshopError(
            f"the workshop broker {broker.redact(url)} refused: {exc}",
            fix="use the URL the instructor gave you for your own name",
        ) from None
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        raise WorkshopError(
            f"cannot reach the workshop broker {broker.redact(url)}: {exc}",
            fix=f"check the room URL ({WORKSHOP_URL_ENV}, or the one saved by "
            "eventlab workshop join NAME --room URL); eventlab doctor tests it",
        ) from None
    finally:
        client.close()


def _version_tuple(text: str) -> tuple[int, int]:
    parts = [*text.split("."), "0", "0"][:2]
    try:
        return int(parts[0]), int(parts[1])
    except ValueError:
        return (0, 0)


def check_room(url: str) -> RoomInfo:
    """Connect to the room broker: reachable, password accepted, version 7.0 or newer.

    Raises:
        WorkshopError: The URL has no password off loopback, nobody answers, the
            password is refused, or the server is older than Redis 7.0.
    """
    with room_client(url, node=True) as client:
        user = str(client.execute_command("ACL", "WHOAMI"))  # type: ignore[no-untyped-call]
        info: dict[str, Any] = client.info("server")
    version = str(info.get("redis_version", "0"))
    server = (
        "valkey" if "valkey_version" in info or info.get("server_name") == "valkey" else "redis"
    )
    if _version_tuple(version) < MIN_VERSION:
        raise WorkshopError(
            f"the workshop broker {broker.redact(url)} runs {server} {version}; "
            "eventlab needs Redis 7.0 or newer (or Valkey)",
            fix="ask the instructor to start the room on Redis >= 7.0 or Valkey",
        )
    shown = str(info.get("valkey_version", version))  # Valkey's redis_version is its Redis level
    return RoomInfo(url=broker.redact(url), version=shown, server=server, user=user)


# -- progress events ----------------------------------------------------------------


@contextlib.contextmanager
def _target(client: redis.Redis) -> Iterator[tuple[redis.Redis, str, bool]]:
    """(client, where, is-room) for progress: the room if one is known, else ``client``."""
    room = room_url()
    if room:
        with room_client(room) as target:
            yield target, broker.redact(room), True
        return
    pool = getattr(client, "connection_pool", None)  # a cluster client has one per node
    kwargs = pool.connection_kwargs if pool is not None else {"port": "cluster"}
    where = f"redis://{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"
    yield client, where, False


def _publish(client: redis.Redis, kind: str, name: str, data: dict[str, Any]) -> str:
    event = Event(type=kind, source=_SOURCE, subject=_check_name(name), data=data)
    with _target(client) as (target, _where, _room):
        return streams.publish(target, progress_key(name), event, maxlen=_MAXLEN)


def record_lesson(client: redis.Redis, *, learner: str, lesson: str, passed: bool = False) -> str:
    """Record that ``learner`` started ``lesson`` (or, with ``passed``, ran its last cell).

    The event goes to the room broker when one is known (:func:`room_url`),
    else through ``client``.

    Returns:
        The entry id in the learner's progress stream.
    """
    if not lesson:
        raise ValueError("lesson must name the lesson, e.g. '03'")
    return _publish(client, _TYPE_PASSED if passed else _TYPE_LESSON, learner, {"lesson": lesson})


def record_score(
    client: redis.Redis,
    *,
    learner: str,
    lab: str,
    score: float,
    max_score: float,
    failed: Sequence[str] = (),
) -> str:
    """Record a lab grade for ``learner``, with the names of the checks that ``failed``.

    Returns:
        The entry id in the learner's progress stream.

    Raises:
        ValueError: ``lab`` is empty, or ``score`` is outside ``0..max_score``.
    """
    if not lab:
        raise ValueError("lab must name the lab folder, e.g. '03-idempotent-consumer'")
    if max_score <= 0 or not 0 <= score <= max_score:
        raise ValueError(f"score {score} must be between 0 and max_score {max_score} (> 0)")
    data = {"lab": lab, "score": float(score), "max": float(max_score), "failed": list(failed)}
    return _publish(client, _TYPE_SCORE, learner, data)


def checkin(client: redis.Redis, *, lesson: str, passed: bool = False) -> Checkin | None:
    """Record ``lesson`` started (or ``passed``) for the current learner; ``None`` when solo.

    An unreachable or refusing room broker does not fail the lesson: the
    returned :class:`Checkin` carries the reason, and its :meth:`Checkin.line`
    says so.
    """
    name = learner()
    if name is None:
        return None
    try:
        with _target(client) as (target, where, room):
            event = Event(
                type=_TYPE_PASSED if passed else _TYPE_LESSON,
                source=_SOURCE,
                subject=name,
                data={"lesson": lesson},
            )
            try:
                entry = streams.publish(target, progress_key(name), event, maxlen=_MAXLEN)
            except redis.ResponseError as exc:  # full, read-only, no permission…
                return Checkin(name, lesson, where, room, None, f"{where} refused: {exc}")
    except WorkshopError as exc:
        return Checkin(name, lesson, "", room=True, entry=None, error=str(exc))
    return Checkin(name, lesson, where, room, entry)


def _claim(client: redis.Redis, name: str, seat: str) -> None:
    """Refuse ``name`` when another seat joined with it (any letter case) and was not forgotten."""
    try:
        keys = [str(k) for k in client.scan_iter(match=f"{WORKSHOP_STREAM}:*", count=1000)]
        for key in keys:
            other = key.removeprefix(f"{WORKSHOP_STREAM}:")
            if other.lower() != name.lower():
                continue
            for _id, fields in streams.entries(client, key):
                if fields.get("type") != _TYPE_JOINED:
                    continue
                with contextlib.suppress(EnvelopeError):
                    data = Event.from_fields(fields).data
                    if isinstance(data, dict) and data.get("seat") not in {None, seat}:
                        raise WorkshopError(
                            f"learner name {other!r} is taken in this room (joined from "
                            "another checkout)",
                            fix="choose another name; if it is you on a new machine, ask the "
                            f"instructor to run: eventlab workshop forget {other}",
                        )
    except redis.exceptions.NoPermissionError:
        return  # an ACL learner: the server's user name is the claim


# -- the instructor's view ------------------------------------------------------------


def _learners(client: redis.Redis) -> list[str]:
    prefix = f"{WORKSHOP_STREAM}:"
    found = {str(k).removeprefix(prefix) for k in client.scan_iter(match=prefix + "*", count=1000)}
    return sorted(n for n in found if _NAME.match(n))


def _fold(name: str, entries: Iterable[tuple[str, dict[str, str]]]) -> LearnerStatus | None:
    started: set[str] = set()
    passed: set[str] = set()
    scores: dict[str, LabScore] = {}
    seen: datetime | None = None
    for _entry_id, fields in entries:
        try:
            event = Event.from_fields(fields)
        except EnvelopeError:
            continue  # a stray entry must not hide the learner's progress
        if event.subject != name or not isinstance(event.data, dict):
            continue
        seen = event.time if seen is None else max(seen, event.time)
        lesson = event.data.get("lesson")
        if event.type == _TYPE_LESSON and isinstance(lesson, str):
            started.add(lesson)
        elif event.type == _TYPE_PASSED and isinstance(lesson, str):
            started.add(lesson)
            passed.add(lesson)
        elif event.type == _TYPE_SCORE:
            with contextlib.suppress(KeyError, TypeError, ValueError):
                lab = str(event.data["lab"])
                value = float(event.data["score"])
                failed = tuple(str(f) for f in event.data.get("failed") or ())
                before = scores.get(lab)
                scores[lab] = LabScore(
                    best=max(value, before.best) if before else value,
                    latest=value,
                    max_score=float(event.data["max"]),
                    attempts=(before.attempts if before else 0) + 1,
                    failing=failed,
                    time=event.time,
                )
    if seen is None:
        return None
    return LearnerStatus(
        learner=name,
        started=tuple(sorted(started)),
        passed=tuple(sorted(passed)),
        scores=scores,
        last_seen=seen,
    )


def status(client: redis.Redis) -> list[LearnerStatus]:
    """Fold every learner's progress stream into one :class:`LearnerStatus`, by name."""
    rows = []
    for name in _learners(client):
        row = _fold(name, streams.entries(client, progress_key(name)))
        if row is not None:
            rows.append(row)
    return rows


def _known(client: redis.Redis, name: str) -> str:
    _check_name(name)
    known = _learners(client)
    if name not in known:
        listed = ", ".join(known) or "nobody yet"
        raise WorkshopError(
            f"no learner {name!r} in this room's progress (known: {listed})",
            fix="check the spelling with: eventlab workshop status",
        )
    return name


def forget(client: redis.Redis, name: str) -> int:
    """Remove learner ``name`` from the room's progress; return the entries removed.

    Their ACL user (:func:`add`), if any, is deleted too; their keys stay (see
    :func:`reset`); the name is free to join again (the room's test seat, a typo).

    Raises:
        WorkshopError: Nobody of that name is in the progress.
    """
    key = progress_key(_known(client, name))
    count = int(client.xlen(key))
    client.unlink(key)
    with contextlib.suppress(redis.ResponseError):  # a server without that user, or no ACL
        _acl(client, "DELUSER", name)
    return count


def reset(
    client: redis.Redis,
    *,
    learner: str | None = None,
    everyone: bool = False,
    progress: bool = False,
) -> ResetReport:
    """Delete one learner's keys (``learner``) or every known learner's (``everyone``).

    A learner's keys are ``NAME:*`` plus what their grading runs left
    (``NAME-g<tag>-*``, :func:`eventlab.streams.run_pattern`). With
    ``progress``, their progress streams go too (a new cohort). Keys on the
    learners' own brokers (setup A) are out of reach: a report with ``keys=0``
    then means "nothing of theirs lives here".

    Raises:
        WorkshopError: Neither or both of ``learner`` and ``everyone`` given, or
            the learner is unknown.
    """
    if (learner is None) == (not everyone):
        raise WorkshopError(
            "say whom to reset: one learner or everyone, not both and not neither",
            fix="eventlab workshop reset --learner NAME, or eventlab workshop reset --all",
        )
    names = [_known(client, learner)] if learner is not None else _learners(client)
    deleted = 0
    for name in names:
        run = streams.run_pattern(name)
        for pattern in (*streams.key_patterns(name), run, "{" + run):
            batch: list[str] = []
            for key in client.scan_iter(match=pattern, count=1000):
                if str(key).startswith(WORKSHOP_STREAM):
                    continue  # never a progress stream, whatever the name
                batch.append(str(key))
                if len(batch) == 500:  # noqa: PLR2004 - one round trip per 500 keys
                    deleted += int(client.unlink(*batch))
                    batch = []
            if batch:
                deleted += int(client.unlink(*batch))
    dropped = 0
    if progress:
        for name in names:
            dropped += int(client.unlink(progress_key(name)))
    return ResetReport(learners=tuple(names), keys=deleted, progress=dropped)


# -- server ACL users: one per learner ------------------------------------------------


def acl_rules(name: str, password: str) -> list[str]:
    """Return the ``ACL SETUSER`` rules of learner ``name``: own keys, append-only progress.

    The user may run every command outside ``@dangerous`` and ``@admin`` on keys
    ``{NAME:*`` and ``NAME:*`` and its grading runs' keys; a selector lets it ``XADD`` (and only
    that) to its own progress stream. Key names from ``SCAN`` are not hidden
    by ACLs; key contents are.
    """
    _check_name(name, joining=True)
    return [
        "reset",
        "on",
        f">{password}",
        *(f"~{pattern}" for pattern in streams.key_patterns(name)),
        f"~{streams.run_pattern(name)}",
        f"~{{{streams.run_pattern(name)}",
        "resetchannels",
        "+@all",
        "-@dangerous",
        "-@admin",
        "+info",
        "+client|setname",
        "+client|id",
        "+script|load",
        "+script|exists",
        f"(~{progress_key(name)} +xadd)",
    ]


def _acl(client: redis.Redis, *args: str) -> None:
    """Run ``ACL <args>``; on a cluster on every node (ACL users are per node, not replicated)."""
    if isinstance(client, redis.RedisCluster):
        client.execute_command("ACL", *args, target_nodes=redis.RedisCluster.ALL_NODES)
    else:
        client.execute_command("ACL", *args)  # type: ignore[no-untyped-call]


def add(client: redis.Redis, name: str, *, password: str | None = None) -> str:
    """Create (or replace) the ACL user of learner ``name`` on the room; return its password.

    Needs the instructor's credentials (``ACL SETUSER`` is an admin command).
    """
    secret = password or secrets.token_urlsafe(18)
    _acl(client, "SETUSER", name, *acl_rules(name, secret))
    return secret


def learner_url(room: str, name: str, password: str) -> str:
    """Return the room URL learner ``name`` logs in with (holds their password: never print it).

    What ``eventlab workshop add NAME`` hands to the learner.
    """
    parts = urlsplit(room)
    host = parts.hostname or "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{name}:{password}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path or "/0", parts.query, ""))


def join_room(
    name: str, *, room: str | None = None, state: str | os.PathLike[str] | None = None
) -> Joined:
    """Claim seat ``name`` on the room (or the lessons' broker), announce it, and save it.

    What ``eventlab workshop join NAME [--room URL]`` does.
    """
    name = _check_name(name, joining=True)
    room_or_env = room or _env.get(_env.WORKSHOP_URL)
    seat = _seat(state)
    if room_or_env:
        info = check_room(room_or_env)
        if info.user not in {"default", name}:
            raise WorkshopError(
                f"this room URL logs in as {info.user!r}, not {name!r}",
                fix=f"join with the name your URL was made for: eventlab workshop join {info.user}",
            )
        with room_client(room_or_env) as client:
            _claim(client, name, seat)
            event = Event(type=_TYPE_JOINED, source=_SOURCE, subject=name, data={"seat": seat})
            streams.publish(client, progress_key(name), event, maxlen=_MAXLEN)
        where = f"the room {info.url} ({info.server} {info.version})"
    else:
        url = _env.get(_env.REDIS_URL)
        if url:
            check_room_url(url)
        handle = broker.up(state=state)
        client = handle.client()
        try:
            _claim(client, name, seat)
            event = Event(type=_TYPE_JOINED, source=_SOURCE, subject=name, data={"seat": seat})
            streams.publish(client, progress_key(name), event, maxlen=_MAXLEN)
        finally:
            client.close()
        kind = "REDIS_URL" if not handle.managed else "your own managed broker"
        where = f"{broker.redact(handle.url)} ({kind})"
    return Joined(name, where, join(name, room=room, state=state))


def _ago(when: datetime | None, now: datetime) -> str:
    if when is None:
        return "never"
    seconds = max(0, int((now - when).total_seconds()))
    if seconds < 120:  # noqa: PLR2004 - under two minutes, seconds read best
        return f"{seconds} s ago"
    if seconds < 7200:  # noqa: PLR2004 - under two hours, minutes
        return f"{seconds // 60} min ago"
    return f"{seconds // 3600} h ago"


def _short(lesson: str) -> str:
    return lesson.split("-", 1)[0]


def format_status(rows: Sequence[LearnerStatus], *, where: str, now: datetime | None = None) -> str:
    """Render ``eventlab workshop status``: per learner, passed vs started, labs, last seen."""
    now = now or datetime.now(UTC)
    lines = [f"workshop on {where}: {len(rows)} learner(s)"]
    if not rows:
        lines.append("nobody has joined yet (learners run: eventlab workshop join NAME --room URL)")
        return "\n".join(lines)
    width = max(len(r.learner) for r in rows)
    for row in rows:
        passed = " ".join(_short(x) for x in row.passed) or "-"
        stuck = " ".join(_short(x) for x in row.stuck)
        text = (
            f"{row.learner:<{width}}  lessons passed {len(row.passed)}/{len(row.started)} "
            f"started: {passed}"
        )
        if stuck:
            text += f"  (started, not passed: {stuck})"
        text += f"  last seen {_ago(row.last_seen, now)}"
        lines.append(text)
        for lab, s in sorted(row.scores.items()):
            lab_line = (
                f"{'':<{width}}  lab {lab}: best {s.best:g}/{s.max_score:g}, latest "
                f"{s.latest:g}/{s.max_score:g}, {s.attempts} attempt(s)"
            )
            if s.failing:
                lab_line += f"; failing: {', '.join(s.failing)}"
            lines.append(lab_line)
    return "\n".join(lines)
