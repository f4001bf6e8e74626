"""The one setup call every lesson opens with: connect, print versions, reset the lesson's keys.

``lesson = course.setup("03")`` finds or starts the broker, prints the versions
the lesson runs on, deletes the keys an earlier run of lesson 03 left (so the
notebook can be re-run from the top), and returns a :class:`Lesson` whose
:meth:`Lesson.key` names the lesson's streams. Introduced in lesson 00.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

import redis

from eventlab import broker, streams, workshop

__all__ = ["Lesson", "setup", "versions"]

_SHOWN = ("eventlab", "redis", "faststream", "pandas", "altair", "ipywidgets")


def versions() -> dict[str, str]:
    """Return the installed versions of the packages a lesson depends on."""
    found: dict[str, str] = {}
    for dist in _SHOWN:
        try:
            found[dist] = version(dist)
        except PackageNotFoundError:
            found[dist] = "missing"
    return found


@dataclass(frozen=True, slots=True)
class Lesson:
    """What a lesson's setup cell hands to the rest of the notebook.

    Attributes:
        id: The two-digit lesson id (``"03"``).
        broker: The broker handle (``broker.kill()``, ``broker.pause(2)``…).
        client: A sync client with ``decode_responses=True``.
    """

    id: str
    broker: broker.Broker
    client: redis.Redis

    @property
    def prefix(self) -> str:
        """The name prefix of every stream this lesson creates (``l03-``)."""
        return f"l{self.id}-"

    def key(self, name: str) -> str:
        """Return the namespaced key of this lesson's stream ``name``: ``lab:{l03-orders}``."""
        return streams.stream_key(self.prefix + name)

    def reset(self) -> int:
        """Delete every key this lesson created; return how many were deleted."""
        pattern = f"{streams.namespace()}:{{{self.prefix}*"
        doomed = list(self.client.scan_iter(match=pattern, count=1000))
        return int(self.client.delete(*doomed)) if doomed else 0


def setup(lesson: str, *, quiet: bool = False) -> Lesson:
    """Connect to the broker, print versions, reset the lesson's keys; return a :class:`Lesson`.

    Args:
        lesson: The two-digit lesson id (``"03"``).
        quiet: Print nothing (for tests).
    """
    workshop.check_learner_url()  # a shared room broker must have a password
    handle = broker.up()
    result = Lesson(id=lesson, broker=handle, client=handle.client())
    removed = result.reset()
    workshop.checkin(
        result.client, lesson=lesson
    )  # the instructor's view; no-op outside a workshop
    if not quiet:
        shown = " · ".join(f"{name} {ver}" for name, ver in versions().items())
        kind = "managed" if handle.managed else "REDIS_URL"
        print(f"{shown}\nbroker {broker.redact(handle.url)} · server {handle.version} ({kind})")  # noqa: T201
        print(f"lesson {lesson}: namespace {streams.namespace()!r}, {removed} old key(s) reset")  # noqa: T201
    return result
