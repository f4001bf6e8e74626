"""The event envelope: CloudEvents 1.0 attributes plus correlation and causation ids.

An :class:`Event` travels as one stream entry of flat, plain-text fields
(``docs/wire-format.md``), so ``redis-cli XRANGE`` shows readable events and an
event written by ``redis-cli XADD`` is consumed like any other.

Introduced in lesson 01.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from itertools import chain
from typing import Any

import orjson

from eventlab._errors import EventlabError

__all__ = ["SPECVERSION", "EnvelopeError", "Event"]

SPECVERSION = "1.0"
"""The CloudEvents version every event carries."""

_REQUIRED = ("specversion", "id", "source", "type", "time")
_OPTIONAL = ("subject", "datacontenttype", "dataschema", "correlationid", "causationid")
_KNOWN = frozenset((*_REQUIRED, *_OPTIONAL, "data"))
_EXTENSION_NAME = re.compile(r"^[a-z0-9]{1,20}$")
_JSON = "application/json"
_slow_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
_ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS


def _dumps(data: Any) -> str:
    """Compact JSON text; orjson is ~10x faster (benchmarks/publish.py), json covers the rest."""
    try:
        return orjson.dumps(data, option=_ORJSON_OPTIONS).decode()
    except (TypeError, orjson.JSONEncodeError):
        return _slow_dumps(data)  # e.g. integers beyond 64 bits; raises TypeError if not JSON


_loads = orjson.loads


class EnvelopeError(EventlabError, ValueError):
    """Stream fields that do not make a valid event.

    Attributes:
        problems: Field name → what is wrong with it; every bad field is named.
        fields: The fields as received, so nothing is lost (dead letters keep them).
    """

    def __init__(self, problems: Mapping[str, str], fields: Mapping[str, str]) -> None:
        """Build the error from every problem found."""
        listed = "; ".join(f"{name}: {why}" for name, why in problems.items())
        super().__init__(
            f"invalid event ({listed})",
            fix="send the fields listed in docs/wire-format.md",
        )
        self.problems = dict(problems)
        self.fields = dict(fields)


def _new_id() -> str:
    return str(uuid.uuid4())


def _now() -> datetime:
    return datetime.now(UTC)


# the last second formatted, "YYYY-MM-DDTHH:MM:SS": events published together share it,
# and formatting only the microseconds is 3x faster (benchmarks/publish.py)
_last_second: tuple[tuple[int, int, int, int], str] = ((0, 0, 0, 0), "")


def _format_time(moment: datetime) -> str:
    global _last_second  # noqa: PLW0603 - a one-entry cache, replaced whole (thread-safe)
    if moment.tzinfo is UTC:  # the common case, without a conversion
        second = (moment.toordinal(), moment.hour, moment.minute, moment.second)
        cached, text = _last_second
        if second != cached:
            text = moment.isoformat()[:19]
            _last_second = (second, text)
        return f"{text}.{moment.microsecond:06d}Z"
    if moment.tzinfo is None:
        raise ValueError("event time must be timezone-aware (use datetime.now(UTC))")
    return moment.astimezone(UTC).isoformat(timespec="microseconds")[:-6] + "Z"


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """One fact that happened, in CloudEvents 1.0 shape.

    Attributes:
        type: What happened, in the past tense (``"OrderPlaced"``).
        source: Who says so: the service that owns the data (``"orders"``).
        data: The change, as JSON-serialisable values (not the whole state).
        id: Unique per event; consumers dedupe on it. Default: a new UUID4.
        time: When it happened (timezone-aware). Default: now, UTC.
        subject: The aggregate it is about (``"order-42"``); keeps per-key order.
        specversion: Always ``"1.0"``.
        datacontenttype: Always ``"application/json"``.
        dataschema: The schema URI ``data`` follows (``"OrderPlaced/v2"``), if any.
        correlationid: The conversation this event belongs to; defaults to ``id``.
        causationid: The id of the event that caused this one, if any.
        extensions: Other CloudEvents extension attributes, kept as text.
    """

    type: str
    source: str
    data: Any = None
    id: str = field(default_factory=_new_id)
    time: datetime = field(default_factory=_now)
    subject: str | None = None
    specversion: str = SPECVERSION
    datacontenttype: str = _JSON
    dataschema: str | None = None
    correlationid: str | None = None
    causationid: str | None = None
    extensions: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Check the attribute types and default the correlation id to the event's own id."""
        ok = (  # one expression for the common case: every event a consumer decodes runs it
            type(self.type) is str
            and type(self.source) is str
            and type(self.id) is str
            and self.type
            and self.source
            and self.id
            and isinstance(self.time, datetime)
            and self.time.tzinfo is not None
        )
        if not ok:
            problems = {
                name: f"must be a non-empty string, got {getattr(self, name)!r}"
                for name in ("type", "source", "id")
                if not isinstance(getattr(self, name), str) or not getattr(self, name)
            }
            if not isinstance(self.time, datetime) or self.time.tzinfo is None:
                problems["time"] = f"must be a timezone-aware datetime, got {self.time!r}"
            if problems:
                raise EnvelopeError(problems, {})
        if self.correlationid is None:
            object.__setattr__(self, "correlationid", self.id)

    def follow(
        self,
        *,
        type: str,  # noqa: A002 - the CloudEvents attribute name
        source: str,
        data: Any = None,
        subject: str | None = None,
        dataschema: str | None = None,
    ) -> Event:
        """Return the event this one caused: same correlation id, causation id = this id.

        The subject carries over unless a new one is given.
        """
        return Event(
            type=type,
            source=source,
            data=data,
            subject=self.subject if subject is None else subject,
            dataschema=dataschema,
            correlationid=self.correlationid,
            causationid=self.id,
        )

    def evolve(self, **changes: Any) -> Event:
        """Return a copy with ``changes`` applied (the same id unless given)."""
        return replace(self, **changes)

    def to_fields(self) -> dict[str, str]:
        """Encode to the flat plain-text stream fields of ``docs/wire-format.md``."""
        flat = iter(_flat_fields(self))
        return dict(zip(flat, flat, strict=True))

    @classmethod
    def from_fields(cls, fields: Mapping[str, str] | Mapping[bytes, bytes]) -> Event:
        """Decode stream fields (``str`` or ``bytes``) into an event.

        Raises:
            EnvelopeError: naming every missing or malformed field at once.
        """
        return _from_text(cls, _as_text(fields))


def _flat_fields(event: Event, *head: Any) -> list[Any]:
    """``head``, then the fields of :meth:`Event.to_fields` flat: ``[name, value, …]``.

    Publishing builds ``XADD <stream> * <fields>`` with it in one list: no dict
    on the way, ~0.8 us less per event than ``xadd(stream, event.to_fields())``.
    """
    flat = [
        *head,
        "specversion",
        event.specversion,
        "id",
        event.id,
        "source",
        event.source,
        "type",
        event.type,
        "time",
        _format_time(event.time),
        "datacontenttype",
        event.datacontenttype,
        "data",
        _dumps(event.data),
    ]
    if event.subject is not None:
        flat += ("subject", event.subject)
    if event.dataschema is not None:
        flat += ("dataschema", event.dataschema)
    if event.correlationid is not None:
        flat += ("correlationid", event.correlationid)
    if event.causationid is not None:
        flat += ("causationid", event.causationid)
    if event.extensions:  # as a dict (rare): an extension named like a field replaces it
        fields = dict(zip(flat[len(head) :: 2], flat[len(head) + 1 :: 2], strict=True))
        fields.update(event.extensions)
        flat = [*head, *chain.from_iterable(fields.items())]
    return flat


def _resp_fields(event: Event) -> tuple[int, str] | None:
    """The fields of :func:`_flat_fields` as RESP bulk strings: ``(count, text)``.

    ``text`` is ``$<len> CRLF <arg> CRLF`` per name and value, in the same order,
    lengths counted in characters — the bytes redis-py would send only when the
    text is ASCII, which the caller checks once per batch. ``None`` for an event
    with extensions (rare), which the caller packs from :func:`_flat_fields`.
    Publishing a batch builds its whole request from these: ~2 us per event
    against ~6.5 us for redis-py's pipeline staging and packing.
    """
    if event.extensions:
        return None
    sv, eid, src, typ, ct = (
        event.specversion, event.id, event.source, event.type, event.datacontenttype
    )  # fmt: skip
    moment, data = _format_time(event.time), _dumps(event.data)
    text = (
        f"$11\r\nspecversion\r\n${len(sv)}\r\n{sv}\r\n$2\r\nid\r\n${len(eid)}\r\n{eid}\r\n"
        f"$6\r\nsource\r\n${len(src)}\r\n{src}\r\n$4\r\ntype\r\n${len(typ)}\r\n{typ}\r\n"
        f"$4\r\ntime\r\n${len(moment)}\r\n{moment}\r\n"
        f"$15\r\ndatacontenttype\r\n${len(ct)}\r\n{ct}\r\n$4\r\ndata\r\n${len(data)}\r\n{data}\r\n"
    )
    count = 14
    if (value := event.subject) is not None:
        text += f"$7\r\nsubject\r\n${len(value)}\r\n{value}\r\n"
        count += 2
    if (value := event.dataschema) is not None:
        text += f"$10\r\ndataschema\r\n${len(value)}\r\n{value}\r\n"
        count += 2
    if (value := event.correlationid) is not None:
        text += f"$13\r\ncorrelationid\r\n${len(value)}\r\n{value}\r\n"
        count += 2
    if (value := event.causationid) is not None:
        text += f"$11\r\ncausationid\r\n${len(value)}\r\n{value}\r\n"
        count += 2
    return count, text


def _from_text(cls: type[Event], text: Mapping[str, str]) -> Event:
    """:meth:`Event.from_fields` of fields already decoded to text (the consumer's hot path).

    A well-formed event takes one pass of cheap checks; anything else goes through
    :func:`_checked`, which names every problem.
    """
    stamp = text.get("time")
    if (
        stamp
        and text.get("specversion") == SPECVERSION
        and text.get("id")
        and text.get("source")
        and text.get("type")
        and text.get("datacontenttype", _JSON) == _JSON
        and text.keys() <= _KNOWN  # no extensions to check
    ):
        try:
            moment = datetime.fromisoformat(stamp)
            data = _loads(text["data"]) if "data" in text else None
        except ValueError:
            pass
        else:
            if moment.tzinfo is not None and cls is Event:  # every check __post_init__ makes
                event = _new_event(Event)
                t, so, da, i, ti, su, sp, dc, ds, co, ca, ex = _SETTERS
                t(event, text["type"])
                so(event, text["source"])
                da(event, data)
                i(event, text["id"])
                ti(event, moment)
                su(event, text.get("subject"))
                sp(event, SPECVERSION)
                dc(event, _JSON)
                ds(event, text.get("dataschema"))
                co(event, text.get("correlationid") or text["id"])
                ca(event, text.get("causationid"))
                ex(event, {})
                return event
    return _checked(cls, text)


# A decoded event is built by setting its slots directly: half the cost of the
# frozen dataclass's __init__, whose checks _from_text has made (benchmarks/consume.py)
_new_event = object.__new__
_SLOTS = (
    "type",
    "source",
    "data",
    "id",
    "time",
    "subject",
    "specversion",
    "datacontenttype",
    "dataschema",
    "correlationid",
    "causationid",
    "extensions",
)
if {f.name for f in fields(Event)} != set(
    _SLOTS
):  # pragma: no cover - a new field needs a slot here
    raise RuntimeError("envelope._SLOTS must name every field of Event")
_SETTERS = tuple(getattr(Event, name).__set__ for name in _SLOTS)


def _checked(cls: type[Event], text: Mapping[str, str]) -> Event:  # noqa: C901, PLR0912 - one check per field
    """Decode ``text`` checking every field, so every problem is named at once."""
    problems: dict[str, str] = {}
    for name in _REQUIRED:
        if not text.get(name):
            problems[name] = "missing"
    if text.get("specversion", SPECVERSION) != SPECVERSION:
        problems["specversion"] = f"must be {SPECVERSION!r}, got {text['specversion']!r}"
    contenttype = text.get("datacontenttype", _JSON)
    if contenttype != _JSON:
        problems["datacontenttype"] = f"must be {_JSON!r}, got {contenttype!r}"
    moment: datetime | None = None
    if text.get("time"):
        try:
            moment = datetime.fromisoformat(text["time"])
        except ValueError:
            problems["time"] = f"not RFC 3339: {text['time']!r}"
        else:
            if moment.tzinfo is None:
                problems["time"] = f"no timezone offset: {text['time']!r}"
    data: Any = None
    if "data" in text:
        try:
            data = _loads(text["data"])
        except ValueError as exc:
            problems["data"] = f"not JSON ({exc})"
    extensions = {k: v for k, v in text.items() if k not in _KNOWN}
    for name in extensions:
        if not _EXTENSION_NAME.match(name):
            problems[name] = "unknown attribute (extensions are lowercase a-z0-9, ≤20 chars)"
    if problems:
        raise EnvelopeError(problems, text)
    assert moment is not None
    return cls(
        type=text["type"],
        source=text["source"],
        data=data,
        id=text["id"],
        time=moment,
        subject=text.get("subject"),
        datacontenttype=contenttype,
        dataschema=text.get("dataschema"),
        correlationid=text.get("correlationid"),
        causationid=text.get("causationid"),
        extensions=extensions,
    )


def _as_text(fields: Mapping[str, str] | Mapping[bytes, bytes]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in fields.items():
        name = key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key)
        out[name] = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return out
