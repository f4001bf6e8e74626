"""Workshop mode: many learners on one shared broker, and an instructor's view of the room.

Each learner works in a namespace of their own (``EVENTLAB_NAMESPACE``, or the
name saved by ``eventlab workshop join NAME``), so every key the kit writes
starts with ``<learner>:`` and no two learners' streams, groups or dead letters
meet. Progress goes to one shared stream, :data:`WORKSHOP_STREAM` (no namespace
prefix, so the instructor reads everyone's): a lesson run
(:func:`record_lesson`) and a lab score (:func:`record_score`, called by the
grader). ``eventlab workshop status`` folds that stream into one row per learner.

A room broker is reachable from other machines, so it must have a password; the
password travels only inside ``REDIS_URL`` and is never printed (see
:func:`eventlab.broker.redact`). :func:`check_room_url` refuses a non-loopback
broker without one.

Introduced in ``docs/instructor.md``; lesson 00 shows the learner's namespace.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import re
import socket
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from eventlab import broker, grading, streams
from eventlab._errors import EventlabError
from eventlab.envelope import EnvelopeError, Event

__all__ = [
    "NAMESPACE_FILE",
    "WORKSHOP_STREAM",
    "WORKSHOP_URL_ENV",
    "LabScore",
    "LearnerStatus",
    "WorkshopError",
    "check_learner_url",
    "check_room_url",
    "checkin",
    "join",
    "joined",
    "learner",
    "leave",
    "record_lesson",
    "record_score",
    "register_cli",
    "reset",
    "status",
]

WORKSHOP_STREAM = "eventlab:{workshop}"
"""The shared progress stream; deliberately outside every learner namespace."""

WORKSHOP_URL_ENV = "EVENTLAB_WORKSHOP_URL"
"""Optional: the room broker that holds only the progress stream.

Set it when learners run lessons and labs on their own managed brokers (so the
fault lessons kill and pause nobody else's broker) but the instructor still
wants one view of the room. Unset, progress goes to the course broker itself.
"""

NAMESPACE_FILE = "namespace"
"""File in the state folder that holds the name saved by :func:`join`."""

_DEFAULT_NAMESPACE = "lab"
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_GRADER_RUN = re.compile(r"-g[0-9a-f]{8}-")  # eventlab.grading.run_namespace + "-c<n>"
_SOURCE = "/eventlab/workshop"
_TYPE_JOINED = "eventlab.workshop.joined"
_TYPE_LESSON = "eventlab.workshop.lesson"
_TYPE_SCORE = "eventlab.workshop.score"
# A room of hundreds of learners writes a few thousand progress events a day;
# the bound only stops a runaway loop from filling the broker's memory.
_MAXLEN = 200_000


class WorkshopError(EventlabError):
    """A learner name, room URL or workshop stream problem a person can fix."""


@dataclass(frozen=True, slots=True)
class LabScore:
    """The latest grade of one lab for one learner.

    Attributes:
        score: Points of the latest grading run.
        max_score: Points available.
        attempts: How many times the lab was graded.
        time: When the latest grading was recorded.
    """

    score: float
    max_score: float
    attempts: int
    time: datetime


@dataclass(frozen=True, slots=True)
class LearnerStatus:
    """What one learner did in the workshop, as the instructor sees it.

    Attributes:
        learner: The learner's namespace.
        lessons: Lessons run at least once, sorted.
        scores: Lab name → its latest :class:`LabScore`.
        last_seen: Time of the learner's latest progress event.
    """

    learner: str
    lessons: tuple[str, ...]
    scores: dict[str, LabScore] = field(default_factory=dict)
    last_seen: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (used by ``eventlab workshop status --json``)."""
        return {
            "learner": self.learner,
            "lessons": list(self.lessons),
            "scores": {
                lab: {
                    "score": s.score,
                    "max": s.max_score,
                    "attempts": s.attempts,
                    "time": s.time.isoformat(),
                }
                for lab, s in sorted(self.scores.items())
            },
            "last_seen": self.last_seen.isoformat() if self.last_seen else None,
        }


def _check_name(name: str, *, joining: bool = False) -> str:
    if not _NAME.match(name):
        raise WorkshopError(
            f"learner name {name!r} must be 1-64 letters, digits, _ . or -",
            fix="choose a name such as 'alice' or 'team-3'",
        )
    if joining and name in {_DEFAULT_NAMESPACE, "eventlab"}:
        raise WorkshopError(
            f"learner name {name!r} is reserved ('lab' is the solo default, "
            "'eventlab' holds the room's progress)",
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


# -- the learner's namespace ------------------------------------------------------


def join(name: str, *, state: str | os.PathLike[str] | None = None) -> Path:
    """Save ``name`` as this checkout's namespace; return the file it is saved in.

    :func:`eventlab.streams.namespace` reads the file when ``EVENTLAB_NAMESPACE``
    is not set, so every later notebook and command in this checkout writes
    under ``name:``. An ``EVENTLAB_NAMESPACE`` variable still wins.

    Raises:
        WorkshopError: The name has characters other than letters, digits, ``_.-``
            or is reserved.
    """
    _check_name(name, joining=True)
    folder = broker.state_dir(state)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / NAMESPACE_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(name + "\n")
    tmp.replace(path)
    return path


def joined(*, state: str | os.PathLike[str] | None = None) -> str | None:
    """Return the name saved by :func:`join`, or ``None``."""
    try:
        value = (broker.state_dir(state) / NAMESPACE_FILE).read_text().strip()
    except OSError:
        return None
    return value or None


def leave(*, state: str | os.PathLike[str] | None = None) -> bool:
    """Forget the name saved by :func:`join`; return whether one was saved."""
    path = broker.state_dir(state) / NAMESPACE_FILE
    existed = path.is_file()
    path.unlink(missing_ok=True)
    return existed


def learner() -> str | None:
    """Return the current learner (the namespace), or ``None`` outside a workshop.

    Outside a workshop the namespace is the solo default ``lab``; lessons call
    :func:`record_lesson` only when this returns a name.
    """
    value = streams.namespace()
    return None if value == _DEFAULT_NAMESPACE else value


# -- security -----------------------------------------------------------------


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
    except (OSError, ValueError):
        return False  # unresolvable: treat as remote, the safe side


def check_room_url(url: str) -> None:
    """Refuse a broker that other machines can reach unless ``url`` carries a password.

    A loopback broker (a learner's own, or Docker's published port) needs none.

    Raises:
        WorkshopError: ``url`` names a non-loopback host and has no password.
    """
    broker.check_url(url, name=WORKSHOP_URL_ENV)  # malformed: one line naming the fix
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    if parts.password or _is_loopback(host):
        return
    raise WorkshopError(
        f"the workshop broker {broker.redact(url)} is on another machine and "
        "REDIS_URL has no password",
        fix="ask the instructor for the room URL with its password: redis://:PASSWORD@host:port/0",
    )


def check_learner_url() -> None:
    """In a workshop, refuse a ``REDIS_URL`` on another machine that has no password.

    A learner (a namespace other than ``lab``, from ``EVENTLAB_NAMESPACE`` or
    ``eventlab workshop join``) shares the room broker with everyone; without a
    password anyone on the network could read or wipe it. Outside a workshop, or
    with a loopback broker, nothing is checked. :func:`eventlab.course.setup`
    calls this before connecting, so every lesson enforces the rule, not only
    the ``eventlab workshop`` commands.

    Raises:
        WorkshopError: A workshop namespace is active and ``REDIS_URL`` names a
            non-loopback host without a password (the message says how to fix it).
    """
    url = os.environ.get("REDIS_URL")
    if url and learner() is not None:
        check_room_url(url)


# -- progress events ------------------------------------------------------------


@contextlib.contextmanager
def _room_client(url: str) -> Iterator[redis.Redis]:
    """A client on the room broker named by ``EVENTLAB_WORKSHOP_URL``; errors name the fix."""
    check_room_url(url)
    client = redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=3.0,
        socket_timeout=5.0,
        retry=Retry(NoBackoff(), 0),  # a dead room must fail fast, not stall a grade
    )
    try:
        yield client
    except redis.AuthenticationError as exc:
        raise WorkshopError(
            f"the workshop broker {broker.redact(url)} refused the password: {exc}",
            fix=f"ask the instructor for the current room URL and set {WORKSHOP_URL_ENV}",
        ) from None
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        raise WorkshopError(
            f"cannot reach the workshop broker {broker.redact(url)}: {exc}",
            fix=f"check the room URL in {WORKSHOP_URL_ENV}, or unset it to keep progress locally",
        ) from None
    finally:
        client.close()


def _publish(client: redis.Redis, kind: str, name: str, data: dict[str, Any]) -> str:
    event = Event(type=kind, source=_SOURCE, subject=_check_name(name), data=data)
    room = os.environ.get(WORKSHOP_URL_ENV)
    if not room:
        return streams.publish(client, WORKSHOP_STREAM, event, maxlen=_MAXLEN)
    with _room_client(room) as target:
        return streams.publish(target, WORKSHOP_STREAM, event, maxlen=_MAXLEN)


def record_lesson(client: redis.Redis, *, learner: str, lesson: str) -> str:
    """Record that ``learner`` ran ``lesson`` (e.g. ``"03-at-least-once-and-idempotency"``).

    The event goes to :data:`WORKSHOP_STREAM` through ``client``, or to the room
    broker when ``EVENTLAB_WORKSHOP_URL`` is set (so does :func:`record_score`).

    Returns:
        The entry id in :data:`WORKSHOP_STREAM`.
    """
    if not lesson:
        raise ValueError("lesson must name the notebook, e.g. '03-at-least-once-and-idempotency'")
    return _publish(client, _TYPE_LESSON, learner, {"lesson": lesson})


def record_score(
    client: redis.Redis, *, learner: str, lab: str, score: float, max_score: float
) -> str:
    """Record a lab grade for ``learner``; the grader calls this when a namespace is set.

    Returns:
        The entry id in :data:`WORKSHOP_STREAM`.

    Raises:
        ValueError: ``lab`` is empty, or ``score`` is outside ``0..max_score``.
    """
    if not lab:
        raise ValueError("lab must name the lab folder, e.g. '03-idempotent-consumer'")
    if max_score <= 0 or not 0 <= score <= max_score:
        raise ValueError(f"score {score} must be between 0 and max_score {max_score} (> 0)")
    data = {"lab": lab, "score": float(score), "max": float(max_score)}
    return _publish(client, _TYPE_SCORE, learner, data)


def checkin(client: redis.Redis, *, lesson: str) -> str | None:
    """Record ``lesson`` for the current learner when in a workshop; else do nothing.

    The one line a lesson's setup needs: outside a workshop (namespace ``lab``)
    it writes nothing; an unreachable room broker becomes a warning, so a
    lesson never fails because the instructor's view is down.

    Returns:
        The entry id, or ``None`` when nothing was recorded.
    """
    name = learner()
    if name is None:
        return None
    try:
        return record_lesson(client, learner=name, lesson=lesson)
    except WorkshopError as exc:
        warnings.warn(f"progress not recorded: {exc}", stacklevel=2)
        return None


def _record_joined(client: redis.Redis, name: str) -> str:
    return _publish(client, _TYPE_JOINED, name, {})


def status(client: redis.Redis) -> list[LearnerStatus]:
    """Fold :data:`WORKSHOP_STREAM` into one :class:`LearnerStatus` per learner, by name.

    Entries that are not valid progress events are skipped (anyone in the room
    can write to the stream; a stray entry must not hide everyone's progress).
    """
    lessons: dict[str, set[str]] = {}
    scores: dict[str, dict[str, LabScore]] = {}
    seen: dict[str, datetime] = {}
    for _entry_id, fields in streams.entries(client, WORKSHOP_STREAM):
        try:
            event = Event.from_fields(fields)
        except EnvelopeError:
            continue
        name = event.subject
        if not name or not _NAME.match(name) or not isinstance(event.data, dict):
            continue
        lessons.setdefault(name, set())
        scores.setdefault(name, {})
        seen[name] = max(seen.get(name, event.time), event.time)
        if event.type == _TYPE_LESSON and isinstance(event.data.get("lesson"), str):
            lessons[name].add(event.data["lesson"])
        elif event.type == _TYPE_SCORE:
            with contextlib.suppress(KeyError, TypeError, ValueError):
                lab = str(event.data["lab"])
                before = scores[name].get(lab)
                scores[name][lab] = LabScore(
                    score=float(event.data["score"]),
                    max_score=float(event.data["max"]),
                    attempts=(before.attempts if before else 0) + 1,
                    time=event.time,
                )
    return [
        LearnerStatus(
            learner=name,
            lessons=tuple(sorted(lessons[name])),
            scores=scores[name],
            last_seen=seen.get(name),
        )
        for name in sorted(lessons)
    ]


def reset(client: redis.Redis, *, learner: str | None = None, progress: bool = False) -> int:
    """Delete a learner's keys, or every known learner's; return the count.

    A learner's keys are ``learner:*`` plus what their grading runs wrote
    (``learner-g<tag>-*``, see :func:`eventlab.grading.run_pattern`), which a
    grade killed half-way leaves behind.

    Args:
        client: A sync client on the room broker.
        learner: One learner; ``None`` resets every learner seen in
            :data:`WORKSHOP_STREAM`.
        progress: Also delete :data:`WORKSHOP_STREAM` (only with ``learner=None``).
    """
    names = [_check_name(learner)] if learner else [s.learner for s in status(client)]
    deleted = 0
    for name in names:
        for pattern in (f"{name}:*", grading.run_pattern(name)):
            batch: list[str] = []
            for key in client.scan_iter(match=pattern, count=1000):
                batch.append(str(key))
                if len(batch) == 500:  # noqa: PLR2004 - one round trip per 500 keys
                    deleted += int(client.unlink(*batch))
                    batch = []
            if batch:
                deleted += int(client.unlink(*batch))
    if progress and learner is None:
        deleted += int(client.unlink(WORKSHOP_STREAM))
    return deleted


# -- the command ----------------------------------------------------------------


def _room() -> broker.Broker:
    url = os.environ.get("REDIS_URL")
    if url:
        check_room_url(url)
    return broker.up()


@contextlib.contextmanager
def _progress() -> Iterator[tuple[str, redis.Redis]]:
    """(redacted URL, client) of the broker that holds the progress stream."""
    room = os.environ.get(WORKSHOP_URL_ENV)
    if room:
        with _room_client(room) as client:
            yield broker.redact(room), client
        return
    handle = _room()
    client = handle.client()
    try:
        yield broker.redact(handle.url), client
    finally:
        client.close()


def _say(line: str) -> None:
    # A command writes to stdout; never pass a URL here without broker.redact.
    sys.stdout.write(line + "\n")


def _cmd_join(args: argparse.Namespace) -> int:
    name = _check_name(args.name, joining=True)
    handle = _room()
    room = os.environ.get(WORKSHOP_URL_ENV)
    if room:
        check_room_url(room)
    client = handle.client()
    try:
        _record_joined(client, name)
    finally:
        client.close()
    path = join(name, state=args.state)
    where = "REDIS_URL" if not handle.managed else "your own managed broker"
    _say(f"joined as {name!r} on {broker.redact(handle.url)} ({where})")
    if room:
        _say(f"progress goes to the room broker {broker.redact(room)}")
    _say(f"saved in {path}; notebooks and commands in this folder now use keys '{name}:*'")
    _say(f"for other shells or a JupyterHub profile: export EVENTLAB_NAMESPACE={name}")
    shell = os.environ.get("EVENTLAB_NAMESPACE")
    if shell and shell != name:
        _say(f"note: EVENTLAB_NAMESPACE={shell} is set here and wins; unset it to use {name!r}")
    return 0


def _cmd_leave(args: argparse.Namespace) -> int:
    _say("left the workshop" if leave(state=args.state) else "no workshop name was saved")
    return 0


def _format_scores(item: LearnerStatus) -> str:
    return (
        ", ".join(f"{lab} {s.score:g}/{s.max_score:g}" for lab, s in sorted(item.scores.items()))
        or "-"
    )


def _cmd_status(args: argparse.Namespace) -> int:
    with _progress() as (where, client):
        rows = status(client)
    if args.json:
        _say(json.dumps({"broker": where, "learners": [r.as_dict() for r in rows]}))
        return 0
    _say(f"workshop on {where}: {len(rows)} learner(s)")
    if not rows:
        _say("nobody has joined yet (learners run: eventlab workshop join NAME)")
        return 0
    width = max(len(r.learner) for r in rows)
    for row in rows:
        lessons = " ".join(lesson.split("-", 1)[0] for lesson in row.lessons) or "-"
        _say(f"{row.learner:<{width}}  lessons: {lessons}  labs: {_format_scores(row)}")
    return 0


def _cmd_reset(args: argparse.Namespace) -> int:
    with _progress() as (where, client):
        count = reset(client, learner=args.learner, progress=args.progress)
    who = args.learner or "every learner"
    _say(f"reset {who}: {count} key(s) deleted on {where}")
    return 0


def register_cli(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``eventlab workshop join|leave|status|reset`` to the command."""
    workshop = sub.add_parser("workshop", help="join a shared broker; the instructor's view")
    actions = workshop.add_subparsers(dest="workshop_command", required=True, metavar="ACTION")

    join_ = actions.add_parser("join", help="use NAME as your namespace on the room broker")
    join_.add_argument("name", help="your learner name: letters, digits, _ . -")
    join_.set_defaults(handler=_cmd_join)

    leave_ = actions.add_parser("leave", help="forget the saved name (back to 'lab')")
    leave_.set_defaults(handler=_cmd_leave)

    status_ = actions.add_parser("status", help="per learner: lessons run and lab scores")
    status_.add_argument("--json", action="store_true", help="print as JSON")
    status_.set_defaults(handler=_cmd_status)

    reset_ = actions.add_parser("reset", help="delete a learner's keys, or the whole room's")
    reset_.add_argument("--learner", default=None, help="only this learner (default: all)")
    reset_.add_argument(
        "--progress", action="store_true", help="also delete the progress stream (all only)"
    )
    reset_.set_defaults(handler=_cmd_reset)
