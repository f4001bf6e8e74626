"""Record what every client and the nemesis did, as a history the checker judges afterwards.

In the spirit of Jepsen: each operation is an ``invoke`` record followed by its
completion, ``ok`` (it happened), ``fail`` (it certainly did not happen) or
``info`` (unknown: it timed out or the connection dropped, so it may have been
applied). The nemesis records each fault as ``info`` records with
``{"phase": "start"}`` and ``{"phase": "stop"}``.

One record per line in JSONL, exactly::

    {"time": "2026-11-26T04:40:00.123456Z", "process": "producer-0",
     "type": "invoke", "f": "enqueue", "value": "9f0c…"}

Recording is an append of one :class:`Record` (a named tuple) to a list
(thread-safe in CPython), so a history of 100,000+ operations costs little;
:meth:`History.rows` gives the records by name (``row.process``, ``row.value``)
and :meth:`History.frame` turns them into a pandas DataFrame in one step.

Introduced in lesson 03 (a history of a crash) and used throughout lesson 11.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import repeat
from operator import itemgetter
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import orjson
import pandas as pd
import redis

__all__ = [
    "COLUMNS",
    "MAYBE_APPLIED",
    "History",
    "OpType",
    "Operation",
    "Record",
]

OpType = Literal["invoke", "ok", "fail", "info"]
"""The four record types: started, happened, did not happen, unknown."""

COLUMNS = ("time", "process", "type", "f", "value")
"""Columns of :meth:`History.frame`, in order (``time`` is datetime64 UTC)."""

MAYBE_APPLIED: tuple[type[BaseException], ...] = (
    asyncio.CancelledError,  # cancelled mid-flight: the request may have been sent
    TimeoutError,
    ConnectionError,
    redis.TimeoutError,
    redis.ConnectionError,
)
"""Errors after which an operation may or may not have been applied (recorded ``info``).

A timeout, a dropped connection or a cancelled task: the request may have
reached the broker and been applied even though no reply came back.
"""

NEMESIS = "nemesis"


class Record(NamedTuple):
    """One record of a history, by name: what :meth:`History.rows` returns.

    Introduced in lesson 03 with the history itself.

    Attributes:
        time_ns: When it was recorded, in epoch nanoseconds (UTC).
        process: Who did it (``"producer-0"``, ``"nemesis"``).
        type: ``invoke``, ``ok``, ``fail`` or ``info`` (see :data:`OpType`).
        f: The operation's name (``"enqueue"``) or the fault's (``"partition"``).
        value: The operation's argument or result (an id, a list of ids, a dict).
    """

    time_ns: int
    process: str
    type: OpType
    f: str
    value: Any


_new_record = tuple.__new__  # Record from a 5-tuple without Record.__new__'s Python frame
_Columns = tuple[np.ndarray[Any, np.dtype[np.int64]], list[str], list[str], list[str], list[Any]]


@dataclass(slots=True)
class Operation:
    """The handle :meth:`History.op` yields; set ``value`` to what completed.

    Attributes:
        process: Who runs the operation.
        f: The operation's name (``"enqueue"``).
        value: Its argument at invoke time; the block may replace it with the
            result (an entry id, a read value) before it completes.
    """

    process: str
    f: str
    value: Any


class History:
    """An append-only record of operations and faults.

    Args:
        path: Optional JSONL file; records are appended to it in batches of
            ``flush_every`` and on :meth:`flush` / :meth:`close`.
        flush_every: How many records to buffer before writing (a count).
    """

    def __init__(
        self, path: str | os.PathLike[str] | None = None, *, flush_every: int = 10_000
    ) -> None:
        """Start an empty history (see the class docstring for the arguments)."""
        self._rows: list[Record] = []
        # read_jsonl's columns (nanos, process, type, f, value): the records, until
        # something needs them one by one (see _all); frame() builds from them directly
        self._columns: _Columns | None = None
        self._settling = threading.Lock()
        self._path = Path(path) if path is not None else None
        self._written = 0
        self._flush_every = flush_every
        if self._path is not None:
            self._path.write_text("")

    def __len__(self) -> int:
        """Return the number of records."""
        return len(self._rows) + (0 if self._columns is None else len(self._columns[0]))

    def __repr__(self) -> str:
        """Show the record count and the file, if any."""
        return f"<History {len(self)} records{f' → {self._path}' if self._path else ''}>"

    # -- recording ------------------------------------------------------------------

    def record(
        self,
        process: str,
        type: OpType,  # noqa: A002 - the record's field name
        f: str,
        value: Any = None,
        *,
        time_ns: int | None = None,
    ) -> None:
        """Append one record (``time_ns``: epoch nanoseconds, default now)."""
        stamp = time.time_ns() if time_ns is None else time_ns
        if self._columns is not None:
            self._all()
        self._rows.append(_new_record(Record, (stamp, process, type, f, value)))
        if self._path is not None and len(self._rows) - self._written >= self._flush_every:
            self.flush()

    def invoke(self, process: str, f: str, value: Any = None) -> None:
        """Record that ``process`` started operation ``f``."""
        self.record(process, "invoke", f, value)

    def ok(self, process: str, f: str, value: Any = None) -> None:
        """Record that operation ``f`` of ``process`` happened."""
        self.record(process, "ok", f, value)

    def fail(self, process: str, f: str, value: Any = None) -> None:
        """Record that operation ``f`` of ``process`` certainly did not happen."""
        self.record(process, "fail", f, value)

    def info(self, process: str, f: str, value: Any = None) -> None:
        """Record that the outcome of ``f`` is unknown (timed out: maybe applied)."""
        self.record(process, "info", f, value)

    def nemesis(self, fault: str, phase: Literal["start", "stop"], **details: Any) -> None:
        """Record that the nemesis started or stopped ``fault`` (``details`` go in the value)."""
        self.record(NEMESIS, "info", fault, {"phase": phase, **details})

    @contextlib.contextmanager
    def op(self, process: str, f: str, value: Any = None) -> Iterator[Operation]:
        """Record ``invoke`` now and ``ok``/``fail``/``info`` when the block ends.

        A block that raises one of :data:`MAYBE_APPLIED` (a timeout, a dropped
        connection) completes as ``info``; any other exception as ``fail``. The
        exception is re-raised either way.
        """
        handle = Operation(process, f, value)
        self.invoke(process, f, value)
        try:
            yield handle
        except MAYBE_APPLIED:
            self.info(process, f, handle.value)
            raise
        except BaseException:
            self.fail(process, f, handle.value)
            raise
        self.ok(process, f, handle.value)

    @contextlib.contextmanager
    def fault(self, fault: str, **details: Any) -> Iterator[None]:
        """Record a nemesis ``start`` now and its ``stop`` when the block ends."""
        self.nemesis(fault, "start", **details)
        try:
            yield
        finally:
            self.nemesis(fault, "stop")

    def extend(self, rows: Iterable[tuple[int, str, str, str, Any]]) -> None:
        """Append many records at once: :class:`Record` s or ``(time_ns, process, type, f, value)``.

        Merging another history is ``history.extend(other.rows())``.
        """
        self._all().extend(map(Record._make, rows))

    # -- reading --------------------------------------------------------------------

    def rows(self) -> list[Record]:
        """Return the records in order, as named tuples (a snapshot: recording goes on).

        ``[r.value for r in history.rows() if r.f == "dequeue" and r.type == "ok"]``
        """
        return self._all()[:]

    def _all(self) -> list[Record]:
        """The records list, built from read_jsonl's columns the first time it is needed."""
        if self._columns is not None:
            with self._settling:
                columns = self._columns
                if columns is not None:
                    nanos, *rest = columns
                    built = zip(nanos.tolist(), *rest, strict=True)
                    self._rows[:0] = map(_new_record, repeat(Record), built)
                    self._columns = None
        return self._rows

    def frame(self) -> pd.DataFrame:
        """Return the records as a DataFrame with :data:`COLUMNS` (``time`` datetime64 UTC)."""
        columns = self._columns
        if columns is not None and not self._rows:  # read from a file, nothing recorded since
            return _frame(*columns)
        if not self._all():
            return pd.DataFrame(
                {
                    "time": pd.Series([], dtype="datetime64[ns, UTC]"),
                    **{c: pd.Series([], dtype=object) for c in COLUMNS[1:]},
                }
            )
        rows = self._rows[:]  # a snapshot: other threads may still append
        # one pass per column is ~10x faster than zip(*rows) at 1M rows
        nanos = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        return _frame(nanos, *(list(map(itemgetter(i), rows)) for i in range(1, len(COLUMNS))))

    def records(self) -> list[dict[str, Any]]:
        """Return the records as JSON-ready dicts (the JSONL lines, parsed)."""
        return [json.loads(line) for line in _lines(self._all())]

    def fault_windows(self) -> pd.DataFrame:
        """Return one row per nemesis fault: ``start``, ``end`` (datetime64 UTC), ``fault``.

        A fault still running has ``end`` = the last record's time. Charts shade these.
        """
        starts: dict[str, list[int]] = {}
        rows: list[tuple[int, int, str]] = []
        records = self._all()
        last = max((r[0] for r in records), default=0)
        for stamp, process, _type, f, value in records:
            if process != NEMESIS or not isinstance(value, dict):
                continue
            if value.get("phase") == "start":
                starts.setdefault(f, []).append(stamp)
            elif value.get("phase") == "stop" and starts.get(f):
                rows.append((starts[f].pop(0), stamp, f))
        rows.extend((s, last, f) for f, pending in starts.items() for s in pending)
        rows.sort()
        return pd.DataFrame(
            {
                "start": pd.to_datetime(np.array([r[0] for r in rows], dtype=np.int64), utc=True),
                "end": pd.to_datetime(np.array([r[1] for r in rows], dtype=np.int64), utc=True),
                "fault": pd.Series([r[2] for r in rows], dtype=object),
            }
        )

    # -- files ----------------------------------------------------------------------

    def flush(self) -> None:
        """Append the records not yet written to the history's file (if it has one)."""
        if self._path is None:
            return
        pending = self._all()[self._written :]
        if pending:
            with self._path.open("a", encoding="utf-8") as handle:
                handle.writelines(_lines(pending))
            self._written += len(pending)

    def close(self) -> None:
        """Write everything still buffered."""
        self.flush()

    def write_jsonl(self, path: str | os.PathLike[str]) -> Path:
        """Write the whole history to ``path`` as JSONL; return the path."""
        target = Path(path)
        with target.open("w", encoding="utf-8") as handle:
            handle.writelines(_lines(self._all()))
        return target

    @classmethod
    def read_jsonl(cls, path: str | os.PathLike[str]) -> History:
        """Load a history written by :meth:`write_jsonl` (or by a ``path=`` history).

        Fast enough for big runs (``benchmarks/checker.py`` reads 1,000,000
        operations in about a second): lines in exactly the form this module
        writes are read column by column (every timestamp in one vectorised
        parse, every value in one orjson call, each distinct
        ``process, type, f`` once); any other JSONL (other key order, other
        offsets, blank lines) is parsed line by line, with the same result.
        """
        history = cls()
        data = Path(path).read_bytes()
        with _gc_paused():
            columns = _read_ours(data)
            if columns is None:
                history._rows = _read_any(data)
            else:
                history._columns = columns  # records built when first needed (History._all)
        return history


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many acyclic objects.

    A million new dicts or tuples would trigger it again and again for nothing.
    """
    paused = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


# What write_jsonl writes, byte for byte, per line: '{"time": "' + a 26-character stamp +
# 'Z", ' + the head ('"process": …, "type": …, "f": …, ') + '"value": ' + JSON + '}\n'.
_FIRST = b'{"time": "'
_BETWEEN = b'}\n{"time": "'  # where one line ends and the next begins
_STAMP = 26
_HEAD_AT = _STAMP + len('Z", ')
_VALUE = b'"value": '


def _read_ours(data: bytes) -> _Columns | None:
    """Columns of JSONL in exactly the form :func:`_lines` writes, or ``None`` for any other.

    Per line only a few slices are taken in Python; the stamps are parsed in one
    numpy call, the values in one orjson call (a JSON array of every value) and
    each distinct head once. Every shape assumption is checked, so a file that
    is not ours (or not valid) returns ``None`` and is read line by line.
    """
    # "\r": written on Windows; NUL: numpy would drop it from the end of a stamp
    if b"\r" in data or b"\x00" in data or not data.startswith(_FIRST):
        return None
    # one piece per line, without its '{"time": "' and '}\n', is one piece per newline:
    # a line that does not end in '}' or the next one not begin '{"time": "' would
    # leave a newline inside a piece, and fewer pieces than newlines
    lines = data[len(_FIRST) : -1 if data.endswith(b"}") else -2].split(_BETWEEN)
    n = len(lines)
    if data.count(b"\n") + (not data.endswith(b"\n")) != n or not data.endswith((b"}", b"}\n")):
        return None
    try:
        stamps = np.frombuffer(b"".join([line[:_STAMP] for line in lines]), dtype=f"S{_STAMP}")
        nanos = stamps.astype("datetime64[us]").astype("datetime64[ns]").view(np.int64)
    except ValueError:  # a short line, or not a stamp
        return None
    at = [line.find(_VALUE, _HEAD_AT) for line in lines]
    if len(nanos) != n or -1 in at:
        return None
    values = _values([line[i + 9 :] for line, i in zip(lines, at, strict=True)])
    columns = _heads([line[_STAMP:i] for line, i in zip(lines, at, strict=True)])
    if columns is None or values is None or len(values) != n:  # len: a line with two values
        return None
    process, kind, f = columns
    return nanos, process, kind, f, values


def _values(texts: list[bytes]) -> list[Any] | None:
    """Every value parsed in one orjson call (a JSON array of them), or ``None`` if not JSON."""
    try:
        values: list[Any] = orjson.loads(b"[" + b",".join(texts) + b"]")
    except orjson.JSONDecodeError:
        return None
    return values


def _heads(heads: list[bytes]) -> list[list[Any]] | None:
    """The process, type and f columns of the lines' heads, each distinct head parsed once."""
    codes: dict[bytes, int] = {}
    for head in heads:
        codes.setdefault(head, len(codes))
    known = [_head(head) for head in codes]
    if None in known:
        return None
    which = np.fromiter(map(codes.__getitem__, heads), dtype=np.intp, count=len(heads))
    return [_object_array([k[i] for k in known])[which].tolist() for i in range(3)]  # type: ignore[index]


def _head(head: bytes) -> tuple[str, str, str] | None:
    """``(process, type, f)`` of a ``Z", "process": …, `` head, or ``None`` if not just that."""
    if not head.startswith(b'Z", '):
        return None
    try:
        fields = orjson.loads(b"{" + head[4:] + b'"value": null}')
    except orjson.JSONDecodeError:
        return None
    if not isinstance(fields, dict) or list(fields) != ["process", "type", "f", "value"]:
        return None
    return fields["process"], fields["type"], fields["f"]


def _read_any(data: bytes) -> list[Record]:
    """Records of any JSONL history: one orjson parse per line, blank lines skipped."""
    lines = data.splitlines()
    try:
        records = [orjson.loads(line) for line in lines]
    except orjson.JSONDecodeError:  # blank lines (skipped), or a real error (raised)
        records = [orjson.loads(line) for line in lines if line.strip()]
    nanos = _nanos([r["time"] for r in records])
    return [
        _new_record(Record, (t, r["process"], r["type"], r["f"], r.get("value")))
        for t, r in zip(nanos, records, strict=True)
    ]


def _nanos(stamps: list[str]) -> list[int]:
    """Epoch nanoseconds of ISO 8601 UTC stamps; the ``…Z`` form we write parses fastest."""
    bare = [s[:-1] for s in stamps if s[-1:] == "Z"]  # numpy parses naive stamps only
    if len(bare) == len(stamps):
        try:
            parsed = np.array(bare, dtype="datetime64[ns]")
        except ValueError:
            pass
        else:
            nanos: list[int] = parsed.view(np.int64).tolist()
            return nanos
    return pd.to_datetime(stamps, utc=True, format="ISO8601").as_unit("ns").asi8.tolist()


def _frame(nanos: np.ndarray[Any, np.dtype[np.int64]], *columns: list[Any]) -> pd.DataFrame:
    """The DataFrame of :meth:`History.frame` from epoch nanoseconds and the other columns."""
    stamps = pd.DatetimeIndex(nanos.view("datetime64[ns]")).tz_localize("UTC")
    return pd.DataFrame(
        {
            "time": stamps,
            # object dtype: pandas 3 would store all-str columns as its "str"
            # dtype, where a missing id (None) becomes NaN and then the text
            # "nan", and which compares 3x slower than numpy's object arrays
            **{
                name: pd.Series(_object_array(values), dtype=object)
                for name, values in zip(COLUMNS[1:], columns, strict=True)
            },
        },
        copy=False,  # one block per column: consolidating would copy 4M references
    )


def _object_array(values: list[Any]) -> np.ndarray[Any, np.dtype[Any]]:
    # np.array() would turn a tuple of lists into a 2-D array; keep one object per row.
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _lines(rows: list[Record]) -> list[str]:
    # Hot path for big histories: the date part is formatted once per second and
    # the constant part of a line once per (process, type, f).
    encode = json.JSONEncoder(default=str).encode
    seconds: dict[int, str] = {}
    heads: dict[tuple[str, str, str], str] = {}
    out: list[str] = []
    for stamp, process, kind, f, value in rows:
        sec, nanos = divmod(stamp, 1_000_000_000)
        day = seconds.get(sec)
        if day is None:
            day = seconds[sec] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        head = heads.get((process, kind, f))
        if head is None:
            head = heads[(process, kind, f)] = (
                f'"process": {encode(process)}, "type": "{kind}", "f": {encode(f)}, '
            )
        out.append(f'{{"time": "{day}.{nanos // 1000:06d}Z", {head}"value": {encode(value)}}}\n')
    return out
