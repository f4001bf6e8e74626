"""Judge a history after the fact: what was lost, duplicated, unexpected, stale or never converged.

Every checker returns a :class:`Verdict` (valid?, counts, offending ids, the
first offending operation, frames for charts). They are vectorised with
pandas and numpy: each checker turns ids into integer codes once
(:func:`pandas.factorize`) and counts with :func:`numpy.bincount`, so a
1,000,000-operation history is judged in under two CPU seconds
(``benchmarks/checker.py`` measures it).

Conventions a history follows so the checkers can read it (see
:mod:`eventlab.history`): producers record ``f="enqueue"`` with the event id as
``value``; consumers record ``f="dequeue"`` ``ok`` with the event id (or a list
of ids) for every delivery they processed, including the final reads. Writers
and readers of a view record ``f="write"`` / ``f="read"`` with
``{"key": …, "version": …}`` (see :func:`stale_reads`).

Every checker reads ids through one rule, :func:`id_of`: a string stays as it
is (no Unicode normalisation: two ids that differ only by it are two ids), an
integer (or an integral float, as pandas stores an int column with a gap) is
its decimal text, bytes are UTF-8, and ``None``/NaN is *no id* — it never
matches an event whose id is the text ``"nan"``.

Introduced in lesson 03 (lost vs duplicated) and used throughout lesson 11;
lesson 06 and lesson 12 use :func:`stale_reads`.
"""

from __future__ import annotations

import math
import time
import unicodedata
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import redis

from eventlab import streams
from eventlab.history import History

__all__ = [
    "Verdict",
    "convergence",
    "diff",
    "exactly_once",
    "fold_stream",
    "id_of",
    "lost_by_retention",
    "monotonic_versions",
    "one_terminal_state",
    "stale_reads",
    "stream_event_ids",
    "total_queue",
    "watch_convergence",
]

_Array = np.ndarray[Any, Any]


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a checker concluded.

    Attributes:
        name: The checker (``"total-queue"``).
        valid: Whether the history satisfies the property.
        counts: Named counts (``{"lost": 3, "duplicated": 0, …}``).
        offending: Named lists of offending ids (event ids or aggregates).
        frames: DataFrames for charts and for looking closer.
        convergence_seconds: For :func:`convergence`: seconds from heal until the
            views agreed for good; ``None`` if they never did (or not applicable).
        detail: For an INVALID verdict, the first offending operation (what,
            which id, its time and process) or why the evidence does not allow a
            VALID verdict; empty when valid.
    """

    name: str
    valid: bool
    counts: dict[str, int]
    offending: dict[str, list[str]] = field(default_factory=dict)
    frames: dict[str, pd.DataFrame] = field(default_factory=dict)
    convergence_seconds: float | None = None
    detail: str = ""

    def __str__(self) -> str:
        """One line: name, VALID/INVALID, the counts, and the first offence when INVALID."""
        counts = ", ".join(f"{k}={v}" for k, v in self.counts.items())
        extra = (
            f", converged in {self.convergence_seconds:.3f} s"
            if self.convergence_seconds is not None
            else ""
        )
        why = f"; {self.detail}" if self.detail else ""
        return f"{self.name}: {'VALID' if self.valid else 'INVALID'} ({counts}{extra}){why}"


HistoryLike = History | pd.DataFrame


def _frame(history: HistoryLike) -> pd.DataFrame:
    if isinstance(history, History):
        return history.frame()
    return history


# -- ids: one rule for every checker ---------------------------------------------------


def id_of(value: Any) -> str | None:  # noqa: PLR0911 - one return per kind of value
    """Return the id every checker uses for ``value``, or ``None`` for *no id*.

    A ``str`` is kept exactly (ids differing only by Unicode normalisation stay
    distinct); an integer, or a float with an integral value (pandas stores an
    int column with a gap as float), becomes its decimal text, so ``1``,
    ``1.0`` and ``"1"`` are one id; bytes are decoded as UTF-8; ``None``, NaN
    and ``pd.NA`` are no id at all, never the text ``"nan"``.
    """
    if type(value) is str:
        return value
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, bool | np.bool_):
        return str(value)
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        if math.isnan(value):
            return None
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "surrogateescape")
    return str(value)


def _norm(values: pd.Series | _Array | Iterable[Any]) -> _Array:
    """Return ``values`` as an object array of :func:`id_of` ids (``None`` = no id)."""
    if isinstance(values, pd.Series):
        raw = values.to_numpy(dtype=object)
    elif isinstance(values, np.ndarray):
        raw = values.astype(object, copy=False)
    else:
        raw = _objects(list(values))
    kind = pd.api.types.infer_dtype(raw, skipna=False)
    if kind == "string":  # all str already: a C-speed scan, no copy
        return raw
    if kind == "integer":
        return raw.astype(np.int64).astype(str).astype(object)
    return _objects([id_of(v) for v in raw])


def _objects(values: list[Any]) -> _Array:
    # np.array() would turn a list of lists into a 2-D array; keep one object per item
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _flat(values: _Array) -> tuple[_Array, _Array]:
    """Flatten cells that are ids or lists of ids; return (ids, index of the cell of each)."""
    if pd.api.types.infer_dtype(values, skipna=False) == "string":
        return values, np.arange(len(values))
    is_list = np.fromiter(
        (isinstance(v, list | tuple) for v in values), dtype=bool, count=len(values)
    )
    if not is_list.any():
        return _norm(values), np.arange(len(values))
    lengths = np.where(is_list, [len(v) if isinstance(v, list | tuple) else 1 for v in values], 1)
    cells = np.repeat(np.arange(len(values)), lengths)
    flat = [x for v in values for x in (v if isinstance(v, list | tuple) else (v,))]
    return _norm(_objects(flat)), cells


def _show(ident: str | None) -> str:
    """Print an id so that two ids differing only by Unicode normalisation look different."""
    if ident is None:
        return "(no id)"
    if ident.isascii() and ident.isprintable():
        return repr(ident)
    if unicodedata.is_normalized("NFC", ident) and ident.isprintable():
        return repr(ident)
    return ascii(ident)  # decomposed or invisible characters: show the code points


def _codes(*parts: _Array) -> tuple[list[_Array], _Array]:
    """Factorize several id arrays together: integer codes per part (-1 = no id), uniques.

    Uniques come in order of first appearance, as :func:`pandas.factorize` gives them.
    """
    joined = np.concatenate(parts) if len(parts) > 1 else parts[0]
    codes, uniques = _factorize(joined)
    out, start = [], 0
    for part in parts:
        out.append(codes[start : start + len(part)])
        start += len(part)
    return out, uniques


def _factorize(ids: _Array) -> tuple[_Array, _Array]:
    """Codes and uniques of an object array of ``str``/``None`` ids (``None`` → -1).

    Hashing a million strings in pandas' hash table costs about a second;
    Python caches each string's hash in the string, so factorizing the int64
    hashes and then checking every id against its code's representative is a
    quarter of that, and exact: any hash collision fails the check and falls
    back to :func:`pandas.factorize`.
    """
    present: _Array | None = None
    if pd.api.types.infer_dtype(ids, skipna=False) != "string":
        present = ~pd.isna(ids)
        values = ids[present]
    else:
        values = ids
    hashes = np.fromiter(map(hash, values), dtype=np.int64, count=len(values))
    codes, _ = pd.factorize(hashes)
    # codes are numbered in order of first appearance: a new code is a new running maximum
    running = np.maximum.accumulate(codes) if len(codes) else codes
    new = np.ones(len(codes), dtype=bool)
    new[1:] = running[1:] > running[:-1]
    uniques = values[np.flatnonzero(new)]
    if not bool((values == uniques[codes]).all()):  # a hash collision: be exact instead
        codes, uniques = pd.factorize(values)
        uniques = np.asarray(uniques, dtype=object)
    codes = codes.astype(np.int64, copy=False)
    if present is None:
        return codes, uniques
    full = np.full(len(ids), -1, dtype=np.int64)
    full[present] = codes
    return full, uniques


def _flags(codes: _Array, size: int) -> _Array:
    out = np.zeros(size, dtype=bool)
    out[codes[codes >= 0]] = True
    return out


def _count(codes: _Array, size: int) -> _Array:
    return np.bincount(codes[codes >= 0], minlength=size)


def _rows(frame: pd.DataFrame, f: str, kind: str | None = None) -> _Array:
    """Row numbers whose ``f`` is ``f`` (and whose ``type`` is ``kind``, if given)."""
    rows = np.flatnonzero(_eq(frame, "f", f))
    if kind is not None:
        rows = rows[frame["type"].to_numpy(dtype=object)[rows] == kind]
    return rows


def _eq(frame: pd.DataFrame, column: str, value: str) -> _Array:
    series = frame[column]
    if series.dtype == object:
        mask: _Array = series.to_numpy() == value  # numpy's object compare: 3x pandas' str
        return mask
    compared: _Array = (series == value).to_numpy(dtype=bool, na_value=False)
    return compared


def _sorted(values: Iterable[Any]) -> list[str]:
    return sorted(str(v) for v in values)


def _when(frame: pd.DataFrame, row: int) -> str:
    """``at <time> by <process>`` for a row of a frame (the parts the frame has)."""
    parts = []
    if "time" in frame.columns:
        stamp = pd.Timestamp(frame["time"].iloc[row])
        parts.append(f"at {stamp.isoformat()}")
    if "process" in frame.columns:
        parts.append(f"by {frame['process'].iloc[row]}")
    return " ".join(parts) or f"(row {row})"


def _first(frame: pd.DataFrame, candidates: list[tuple[int, str]]) -> str:
    """The earliest of ``(row, sentence)`` candidates, by time when the frame has one."""
    found = [c for c in candidates if c[0] >= 0]
    if not found:
        return ""
    if "time" in frame.columns:
        times = frame["time"]
        row, text = min(found, key=lambda c: (pd.Timestamp(times.iloc[c[0]]), c[0]))
    else:
        row, text = min(found)
    return f"first offending operation: {text} {_when(frame, row)}"


def _first_row(rows: _Array, mask: _Array) -> int:
    hits = np.flatnonzero(mask)
    return int(rows[hits[0]]) if hits.size else -1


def _second_occurrence(codes: _Array, wanted: _Array) -> int:
    """Index (into ``codes``) of the first repeat of a code flagged in ``wanted``, or -1."""
    positions = np.flatnonzero((codes >= 0) & wanted[np.maximum(codes, 0)])
    if not positions.size:
        return -1
    repeat = pd.Series(codes[positions]).duplicated().to_numpy()
    hits = np.flatnonzero(repeat)
    return int(positions[hits[0]]) if hits.size else -1


# -- queues and effects ----------------------------------------------------------------


def total_queue(
    history: HistoryLike,
    *,
    enqueue: str = "enqueue",
    dequeue: str = "dequeue",
    allow_duplicates: bool = True,
) -> Verdict:
    """Check that every acknowledged enqueue was dequeued, and nothing appeared from nowhere.

    Jepsen's total-queue: **lost** = enqueue ``ok`` but never dequeued;
    **duplicated** = dequeued more than once (allowed under at-least-once unless
    ``allow_duplicates=False``); **unexpected** = dequeued but never enqueued (or
    whose enqueue certainly failed); **recovered** = enqueue ``info`` (timed
    out) that was dequeued after all. A dequeue with no id (``None``) counts
    for nothing.

    Returns:
        A verdict; frames ``"outcomes"`` (outcome, count) and ``"deliveries"``
        (id, deliveries). ``detail`` names the first offending operation.
    """
    frame = _frame(history)
    values = frame["value"].to_numpy(dtype=object)
    enq_rows = _rows(frame, enqueue)
    deq_rows = _rows(frame, dequeue, "ok")
    etype = frame["type"].to_numpy(dtype=object)[enq_rows]
    deq_ids, deq_cells = _flat(values[deq_rows])
    (ec, dc), uniques = _codes(_norm(values[enq_rows]), deq_ids)
    n = len(uniques)
    is_ok, is_fail = etype == "ok", etype == "fail"
    attempted = _flags(ec[etype == "invoke"], n)
    acked, failed = _flags(ec[is_ok], n), _flags(ec[is_fail], n)
    deliveries = _count(dc, n)
    delivered = deliveries > 0
    lost = acked & ~delivered
    duplicated = deliveries > 1
    # possible = attempted and not certainly failed, or acknowledged
    unexpected = delivered & ~((attempted & ~failed) | acked)
    recovered = attempted & ~(acked | failed) & delivered
    valid = not lost.any() and not unexpected.any() and (allow_duplicates or not duplicated.any())
    detail = ""
    if not valid:
        candidates = []
        if lost.any():
            row = _first_row(enq_rows, is_ok & lost[np.maximum(ec, 0)] & (ec >= 0))
            candidates.append((row, f"lost {_show(values[row])}: enqueue ok"))
        if unexpected.any():
            at = np.flatnonzero((dc >= 0) & unexpected[np.maximum(dc, 0)])[0]
            row = int(deq_rows[deq_cells[at]])
            candidates.append((row, f"unexpected {_show(uniques[dc[at]])}: dequeue ok"))
        if not allow_duplicates and duplicated.any():
            at = _second_occurrence(dc, duplicated)
            row = int(deq_rows[deq_cells[at]])
            candidates.append((row, f"duplicated {_show(uniques[dc[at]])}: second dequeue"))
        detail = _first(frame, candidates)
    outcomes = pd.DataFrame(
        {
            "outcome": ["delivered once", "duplicated", "lost", "unexpected", "recovered"],
            "count": [
                int((deliveries == 1).sum()),
                int(duplicated.sum()),
                int(lost.sum()),
                int(unexpected.sum()),
                int(recovered.sum()),
            ],
        }
    )
    return Verdict(
        name="total-queue",
        valid=bool(valid),
        counts={
            "attempted": int(attempted.sum()),
            "acknowledged": int(acked.sum()),
            "delivered": int(delivered.sum()),
            "lost": int(lost.sum()),
            "duplicated": int(duplicated.sum()),
            "unexpected": int(unexpected.sum()),
            "recovered": int(recovered.sum()),
        },
        offending={
            "lost": _sorted(uniques[lost]),
            "duplicated": _sorted(uniques[duplicated]),
            "unexpected": _sorted(uniques[unexpected]),
            "recovered": _sorted(uniques[recovered]),
        },
        frames={
            "outcomes": outcomes,
            "deliveries": pd.DataFrame(
                {
                    "id": pd.Series(uniques[delivered], dtype=object),
                    "deliveries": deliveries[delivered],
                }
            ),
        },
        detail=detail,
    )


def exactly_once(
    history: HistoryLike,
    *,
    effects: Iterable[Any] | pd.Series | None = None,
    enqueue: str = "enqueue",
    effect: str = "effect",
) -> Verdict:
    """Check that every acknowledged event had its effect applied exactly once.

    Args:
        history: The history (enqueue records say which events exist).
        effects: One event id per applied effect (e.g. the list a handler
            appends to); default: the history's ``f=effect`` ``ok`` values.
        enqueue: The producer's operation name.
        effect: The operation name used when ``effects`` is ``None``.

    Returns:
        A verdict with counts ``once``, ``missing``, ``duplicated``, ``unexpected``
        and frame ``"effects"`` (id, applied). ``detail`` names the first
        offending operation (or, for a list of effects, its position).
    """
    frame = _frame(history)
    values = frame["value"].to_numpy(dtype=object)
    enq_rows = _rows(frame, enqueue)
    etype = frame["type"].to_numpy(dtype=object)[enq_rows]
    if effects is None:
        eff_rows = _rows(frame, effect, "ok")
        applied_ids, cells = _flat(values[eff_rows])
        where: _Array | None = eff_rows[cells]
    else:
        raw = effects.to_numpy(dtype=object) if isinstance(effects, pd.Series) else effects
        applied_ids, where = _norm(raw if isinstance(raw, np.ndarray) else list(raw)), None
    (ec, ac), uniques = _codes(_norm(values[enq_rows]), applied_ids)
    n = len(uniques)
    is_ok = etype == "ok"
    acked = _flags(ec[is_ok], n)
    attempted, failed = _flags(ec[etype == "invoke"], n), _flags(ec[etype == "fail"], n)
    applied = _count(ac, n)
    missing = acked & (applied == 0)
    duplicated = applied > 1
    # an effect may come only from an enqueue that was attempted and did not
    # certainly fail, or was acknowledged (the same rule as total_queue)
    unexpected = (applied > 0) & ~((attempted & ~failed) | acked)
    valid = not (missing.any() or duplicated.any() or unexpected.any())
    detail = ""
    if not valid:
        candidates: list[tuple[int, str]] = []
        if missing.any():
            row = _first_row(enq_rows, is_ok & (ec >= 0) & missing[np.maximum(ec, 0)])
            candidates.append((row, f"missing effect of {_show(values[row])}: enqueue ok"))
        for name, wanted, at in (
            ("duplicated", duplicated, _second_occurrence(ac, duplicated)),
            ("unexpected", unexpected, _first_row(np.arange(len(ac)), _hit(ac, unexpected))),
        ):
            if at < 0 or not wanted.any():
                continue
            what = f"{name} effect of {_show(uniques[ac[at]])}"
            if where is None:
                detail = detail or f"first offending effect: {what} (effects[{at}])"
            else:
                candidates.append((int(where[at]), f"{what}: effect ok"))
        detail = _first(frame, candidates) or detail
    # acknowledged ids first (in history order), then effects of other ids
    shown = np.concatenate([np.flatnonzero(acked), np.flatnonzero(~acked & (applied > 0))])
    return Verdict(
        name="exactly-once",
        valid=bool(valid),
        counts={
            "events": int(acked.sum()),
            "once": int((acked & (applied == 1)).sum()),
            "missing": int(missing.sum()),
            "duplicated": int(duplicated.sum()),
            "unexpected": int(unexpected.sum()),
        },
        offending={
            "missing": _sorted(uniques[missing]),
            "duplicated": _sorted(uniques[duplicated]),
            "unexpected": _sorted(uniques[unexpected]),
        },
        frames={
            "effects": pd.DataFrame(
                {"id": pd.Series(uniques[shown], dtype=object), "applied": applied[shown]}
            )
        },
        detail=detail,
    )


def _hit(codes: _Array, wanted: _Array) -> _Array:
    mask: _Array = (codes >= 0) & wanted[np.maximum(codes, 0)]
    return mask


# -- states and versions ---------------------------------------------------------------


def one_terminal_state(
    transitions: pd.DataFrame,
    *,
    terminal: Collection[str],
    aggregates: Iterable[Any] | None = None,
) -> Verdict:
    """Check that every aggregate (order) ended in exactly one terminal state.

    Args:
        transitions: One row per state reached: columns ``aggregate`` and
            ``state`` (optional ``time`` and ``process`` name the offence).
        terminal: The terminal states (``{"OrderCompleted", "OrderCancelled"}``).
        aggregates: Every aggregate that must have ended; default: those seen.
            Read with :func:`id_of`, like the column, so ``[1, 2]`` matches an
            int column.

    Returns:
        A verdict with counts ``aggregates``, ``one``, ``none``, ``many`` and frame
        ``"terminal"`` (aggregate, terminal_states).
    """
    agg = _norm(transitions["aggregate"])
    is_terminal = transitions["state"].isin(list(terminal)).to_numpy(dtype=bool)
    if aggregates is None:
        (codes,), uniques = _codes(agg)
        ecodes = codes
    else:
        (codes, ecodes), uniques = _codes(agg, _norm(list(aggregates)))
    n = len(uniques)
    per = _count(codes[is_terminal], n)
    wanted = _flags(ecodes, n) | (per > 0)  # expected ones, and any that ended anyway
    none = wanted & (per == 0)
    many = per > 1
    valid = not (none.any() or many.any())
    detail = ""
    if not valid:
        candidates: list[tuple[int, str]] = []
        if many.any():
            at = _second_occurrence(np.where(is_terminal, codes, -1), many)
            candidates.append(
                (at, f"second terminal state {transitions['state'].iloc[at]!s} of {_show(agg[at])}")
            )
        if none.any():
            first_none = int(np.flatnonzero(none)[0]) if not many.any() else -1
            if first_none >= 0:
                seen = np.flatnonzero(codes == first_none)
                ident = _show(uniques[first_none])
                if seen.size:
                    row = int(seen[-1])
                    last = transitions["state"].iloc[row]
                    candidates.append((row, f"{ident} never ended; its last state {last!s}"))
                else:
                    detail = f"{ident} never ended: no transition at all"
        detail = _first(transitions.reset_index(drop=True), candidates) or detail
    order = np.flatnonzero(wanted)
    if aggregates is not None:  # the expected ones in the order given, then the others
        given = pd.unique(ecodes[ecodes >= 0])
        order = np.concatenate([given, order[~np.isin(order, given)]])
    return Verdict(
        name="one-terminal-state",
        valid=bool(valid),
        counts={
            "aggregates": int(wanted.sum()),
            "one": int((wanted & (per == 1)).sum()),
            "none": int(none.sum()),
            "many": int(many.sum()),
        },
        offending={"none": _sorted(uniques[none]), "many": _sorted(uniques[many])},
        frames={
            "terminal": pd.DataFrame(
                {
                    "aggregate": pd.Series(uniques[order], dtype=object),
                    "terminal_states": per[order],
                }
            )
        },
        detail=detail,
    )


def monotonic_versions(observations: pd.DataFrame) -> Verdict:
    """Check that each aggregate's observed version never goes backwards.

    Args:
        observations: Columns ``aggregate`` and ``version`` (int), in observation
            order, or with a ``time`` column to sort by (stable); an optional
            ``process`` column names who saw the offence. Aggregates are read
            with :func:`id_of`, so ``1`` and ``"1"`` are one aggregate.

    Returns:
        A verdict with counts ``observations``, ``aggregates``, ``regressions`` and
        frame ``"regressions"`` (aggregate, [time,] before, after).
    """
    obs = observations
    if "time" in obs.columns:
        obs = obs.sort_values("time", kind="stable")
    obs = obs.reset_index(drop=True)
    versions = obs["version"].to_numpy(dtype=np.int64)
    (codes,), uniques = _codes(_norm(obs["aggregate"]))
    n = len(codes)
    order = np.argsort(codes, kind="stable")  # per aggregate, in observation order
    cs, vs = codes[order], versions[order]
    same = np.zeros(n, dtype=bool)
    same[1:] = (cs[1:] == cs[:-1]) & (cs[1:] >= 0)
    prev = np.zeros(n, dtype=np.int64)
    prev[1:] = vs[:-1]
    bad_sorted = same & (vs < prev)
    rows = order[bad_sorted]
    before = prev[bad_sorted]
    back = np.argsort(rows, kind="stable")
    rows, before = rows[back], before[back]
    regressions = pd.DataFrame({"aggregate": pd.Series(uniques[codes[rows]], dtype=object)})
    if "time" in obs.columns:
        regressions["time"] = obs["time"].to_numpy()[rows]
    regressions["before"] = before
    regressions["after"] = versions[rows]
    detail = ""
    if rows.size:
        row = int(rows[0])
        detail = _first(
            obs,
            [
                (
                    row,
                    (
                        f"{_show(uniques[codes[row]])} went back from version {before[0]} "
                        f"to {versions[row]}"
                    ),
                )
            ],
        )
    return Verdict(
        name="monotonic-versions",
        valid=not rows.size,
        counts={
            "observations": n,
            "aggregates": len(uniques),
            "regressions": len(rows),
        },
        offending={"regressed": _sorted(pd.unique(regressions["aggregate"]))},
        frames={"regressions": regressions},
        detail=detail,
    )


# -- reads: stale or fresh -------------------------------------------------------------


def _key_version(frame: pd.DataFrame, rows: _Array) -> tuple[_Array, _Array]:
    """Keys (ids) and versions of ``rows``: from ``key``/``version`` columns or dict values."""
    if "key" in frame.columns and "version" in frame.columns:
        keys = _norm(frame["key"].to_numpy(dtype=object)[rows])
        raw = frame["version"].to_numpy(dtype=object)[rows]
    else:
        values = frame["value"].to_numpy(dtype=object)[rows]
        dicts = [v if isinstance(v, dict) else {} for v in values]
        keys = _norm(_objects([d.get("key") for d in dicts]))
        raw = _objects([d.get("version") for d in dicts])
    versions = pd.to_numeric(pd.Series(raw, dtype=object), errors="coerce")
    return keys, versions.fillna(0).to_numpy(dtype=np.float64)


def stale_reads(
    history: HistoryLike,
    *,
    within: float = 0.0,
    write: str = "write",
    read: str = "read",
) -> Verdict:
    """Find reads that missed a write acknowledged before they began (Jepsen-style staleness).

    A history records writes (``f=write``, ``ok`` value ``{"key": k,
    "version": v}``: version ``v`` of ``k`` is acknowledged at that record's
    time) and reads (``f=read``: an ``invoke`` when the read began, an ``ok``
    whose value ``{"key": k, "version": v}`` says what it saw; ``None`` or 0 =
    nothing). A frame with ``key`` and ``version`` columns works as well.
    The read is **stale** when a write of a newer version of its key was
    acknowledged more than ``within`` seconds before the read began: a
    linearizable (or read-your-writes) store never does that; an eventually
    consistent view does, and ``within`` is the staleness it promises.

    Writes that timed out (``info``) may or may not be visible, so they never
    make a read stale. A read ``ok`` without its ``invoke`` (paired per process)
    is not judged: when it began is unknown (counted as ``unpaired``).

    Args:
        history: The history (or its frame).
        within: Seconds of staleness allowed (0 = every acknowledged write
            must be visible to a read that begins after it).
        write: The writers' operation name.
        read: The readers' operation name.

    Returns:
        A verdict with counts ``reads``, ``writes``, ``stale``, ``unpaired`` and
        frame ``"stale"`` (key, process, began, seen, missed, acknowledged,
        stale_for_s: seconds at least between the newest missed write's
        acknowledgement and the read's start). ``detail`` names the first stale read.
    """
    frame = _frame(history)
    nanos = pd.DatetimeIndex(frame["time"]).as_unit("ns").asi8
    w_rows = _rows(frame, write, "ok")
    r_rows = _rows(frame, read)
    r_all = frame["type"].to_numpy(dtype=object)[r_rows]
    keep = (r_all == "ok") | (r_all == "invoke")
    r_rows, r_types = r_rows[keep], r_all[keep]
    # pair each read ok with the invoke just before it in the same process
    procs = pd.factorize(frame["process"].to_numpy(dtype=object)[r_rows])[0]
    by_proc = np.argsort(procs, kind="stable")
    began = np.full(len(r_rows), -1, dtype=np.int64)
    prev_same = np.zeros(len(r_rows), dtype=bool)
    prev_same[1:] = procs[by_proc][1:] == procs[by_proc][:-1]
    r_kind = r_types[by_proc]
    paired = prev_same & (r_kind == "ok")
    paired[1:] &= r_kind[:-1] == "invoke"
    began[by_proc[paired]] = nanos[r_rows][by_proc[np.flatnonzero(paired) - 1]]
    oks = r_types == "ok"
    unpaired = int((oks & (began < 0)).sum())
    judged = r_rows[oks & (began >= 0)]
    starts = began[oks & (began >= 0)]
    w_keys, w_versions = _key_version(frame, w_rows)
    r_keys, r_versions = _key_version(frame, judged)
    (wc, rc), uniques = _codes(w_keys, r_keys)
    writes = pd.DataFrame({"key": wc, "acked": nanos[w_rows], "missed": w_versions})
    writes = writes[writes["key"] >= 0].sort_values("acked", kind="stable")
    # the newest version of each key acknowledged so far, at every acknowledgement
    writes["missed"] = writes.groupby("key", sort=False)["missed"].cummax()
    cut = starts - int(within * 1e9)
    reads = pd.DataFrame({"key": rc, "cut": cut, "row": judged, "seen": r_versions})
    reads = reads.sort_values("cut", kind="stable")
    merged = pd.merge_asof(
        reads,
        writes,
        left_on="cut",
        right_on="acked",
        by="key",
        direction="backward",
        allow_exact_matches=False,
    )
    stale_mask = (merged["missed"] > merged["seen"]).to_numpy(dtype=bool, na_value=False)
    stale = merged[stale_mask].sort_values("row")
    rows = stale["row"].to_numpy(dtype=np.int64)
    frame_rows = frame["process"].to_numpy(dtype=object)
    table = pd.DataFrame(
        {
            "key": pd.Series(uniques[stale["key"].to_numpy()], dtype=object),
            "process": pd.Series(frame_rows[rows], dtype=object),
            "began": pd.to_datetime(stale["cut"].to_numpy() + int(within * 1e9), utc=True),
            "seen": stale["seen"].to_numpy(),
            "missed": stale["missed"].to_numpy(),
            "acknowledged": pd.to_datetime(stale["acked"].to_numpy(dtype=np.int64), utc=True),
        }
    )
    table["stale_for_s"] = (table["began"] - table["acknowledged"]).dt.total_seconds()
    detail = ""
    if len(table):
        first = table.iloc[0]
        detail = _first(
            frame,
            [
                (
                    int(rows[0]),
                    (
                        f"read of {_show(first['key'])} saw version {_num(first['seen'])} but "
                        f"version {_num(first['missed'])} was acknowledged at "
                        f"{first['acknowledged'].isoformat()}, "
                        f"{first['stale_for_s']:.3f} s before the read began; read ok"
                    ),
                )
            ],
        )
    return Verdict(
        name="stale-read",
        valid=not len(table),
        counts={
            "reads": len(judged),
            "writes": len(w_rows),
            "stale": len(table),
            "unpaired": unpaired,
        },
        offending={"stale": _sorted(pd.unique(table["key"]))},
        frames={"stale": table},
        detail=detail,
    )


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


# -- views ------------------------------------------------------------------------------


def diff(projection: Mapping[str, Any], expected: Mapping[str, Any]) -> list[str]:
    """Return the keys on which ``projection`` and ``expected`` disagree (missing counts)."""
    keys = set(projection) | set(expected)
    return sorted(str(k) for k in keys if projection.get(k) != expected.get(k))


def fold_stream(
    client: redis.Redis,
    stream: str,
    apply: Callable[[dict[str, Any], dict[str, str]], None],
    *,
    initial: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Fold the stream's whole log (XRANGE) into a state: the truth a projection must reach.

    Args:
        client: A sync client.
        stream: The stream key.
        apply: ``apply(state, fields)`` updates ``state`` in place for one entry.
        initial: The starting state (copied).
    """
    state: dict[str, Any] = dict(initial or {})
    for _entry_id, fields in streams.entries(client, stream):
        apply(state, fields)
    return state


def convergence(
    samples: pd.DataFrame,
    *,
    heal: datetime | pd.Timestamp,
    within: float,
    offending: Iterable[str] = (),
) -> Verdict:
    """Judge samples of how many keys disagreed over time, against a deadline after heal.

    A VALID verdict needs evidence: at least one sample taken at or after
    ``heal``, the last sample agreeing, and — when the samples say how many
    keys were compared (column ``compared``) — a non-empty comparison at the
    end (two empty views agree about nothing: the truth may read the wrong key).
    Otherwise the verdict is INVALID and ``detail`` says why.

    Args:
        samples: Columns ``time`` (datetime64 UTC) and ``disagreeing`` (int);
            optional ``compared`` (keys in either view at that sample).
        heal: When the last fault stopped.
        within: Seconds after ``heal`` by which the views must agree for good.
        offending: Keys still disagreeing at the last sample.

    Returns:
        A verdict with ``convergence_seconds`` = seconds from ``heal`` to the first
        sample after which every sample agrees (``None`` if the last one disagrees
        or no sample follows the heal); valid when that is at most ``within``.
        Frame ``"convergence"``.
    """
    columns = ["time", "disagreeing"] + (["compared"] if "compared" in samples.columns else [])
    frame = samples[columns].sort_values("time", kind="stable").reset_index(drop=True)
    heal_ts = pd.Timestamp(heal)
    heal_ts = heal_ts.tz_localize(UTC) if heal_ts.tzinfo is None else heal_ts.tz_convert(UTC)
    dis = frame["disagreeing"].to_numpy()
    after = frame[frame["time"] >= heal_ts]
    seconds: float | None = None
    reason = ""
    if not len(after):
        reason = (
            "no sample at or after the heal: nothing shows the views agree afterwards "
            "(sample after the heal, e.g. with watch_convergence)"
        )
    elif "compared" in frame.columns and not frame["compared"].iloc[-1] > 0:
        reason = (
            "both views are empty at the last sample: nothing was compared "
            "(is the truth reading the right key?)"
        )
    elif dis[-1] == 0:
        # last sample that disagreed; the next one starts the settled run
        bad = np.flatnonzero(dis != 0)
        first_ok = 0 if not bad.size else int(bad[-1]) + 1
        settled = frame["time"].iloc[first_ok]
        seconds = max(0.0, (settled - heal_ts).total_seconds())
    else:
        last = frame["time"].iloc[-1].isoformat()
        reason = f"{int(dis[-1])} keys still disagree at the last sample, {last}"
    valid = seconds is not None and seconds <= within
    if seconds is not None and not valid:
        reason = f"converged {seconds:.3f} s after the heal, later than within={within} s"
    return Verdict(
        name="convergence",
        valid=valid,
        counts={
            "samples": len(frame),
            "samples_after_heal": len(after),
            "max_disagreeing_after_heal": int(after["disagreeing"].max()) if len(after) else 0,
            "disagreeing_at_end": int(dis[-1]) if len(dis) else 0,
        },
        offending={"disagreeing": _sorted(offending)},
        frames={"convergence": frame},
        convergence_seconds=seconds,
        detail=reason,
    )


def watch_convergence(
    projection: Callable[[], Mapping[str, Any]],
    truth: Callable[[], Mapping[str, Any]],
    *,
    within: float,
    heal: datetime | None = None,
    interval: float = 0.02,
    samples: list[tuple[datetime, int]] | None = None,
) -> Verdict:
    """Poll a projection against the fold of the log until they agree or ``within`` passes.

    Every sample records how many keys disagree and how many were compared, so
    two empty views (a truth reading the wrong key) give INVALID, not VALID.

    Args:
        projection: Reads the projection (the read model a service maintains).
        truth: Folds the log (e.g. a :func:`fold_stream` call).
        within: Seconds after ``heal`` allowed for convergence.
        heal: When the faults were healed (default: now).
        interval: Seconds between samples.
        samples: Earlier ``(time, disagreeing)`` samples (taken during the faults)
            to include in the frame.

    Returns:
        The :func:`convergence` verdict.
    """
    healed = heal or datetime.now(UTC)
    rows: list[tuple[datetime, int, float]] = [(t, n, float("nan")) for t, n in samples or []]
    deadline = time.monotonic() + within - (datetime.now(UTC) - healed).total_seconds()
    while True:
        seen, expected = projection(), truth()
        keys = diff(seen, expected)
        rows.append((datetime.now(UTC), len(keys), float(len(set(seen) | set(expected)))))
        if (not keys and expected) or time.monotonic() > deadline:
            break
        time.sleep(interval)
    frame = pd.DataFrame(
        {
            "time": pd.to_datetime([r[0] for r in rows], utc=True),
            "disagreeing": np.array([r[1] for r in rows], dtype=np.int64),
            "compared": np.array([r[2] for r in rows], dtype=np.float64),
        }
    )
    return convergence(frame, heal=healed, within=within, offending=keys)


def stream_event_ids(client: redis.Redis, stream: str) -> list[str]:
    """Return the event ids (the ``id`` field) of every entry still in ``stream``."""
    return [fields.get("id", entry) for entry, fields in streams.entries(client, stream)]


def lost_by_retention(
    history: HistoryLike,
    *,
    present: Iterable[Any],
    enqueue: str = "enqueue",
    dequeue: str = "dequeue",
) -> Verdict:
    """Find acknowledged events that trimming (MAXLEN) removed before anyone read them.

    Args:
        history: The history (enqueue ``ok`` and dequeue ``ok`` records).
        present: Event ids still in the stream (:func:`stream_event_ids`).
        enqueue: The producer's operation name.
        dequeue: The consumer's operation name.

    Returns:
        A verdict with counts ``acknowledged``, ``trimmed`` (no longer in the
        stream) and ``lost`` (trimmed and never delivered); valid when nothing was lost.
    """
    frame = _frame(history)
    values = frame["value"].to_numpy(dtype=object)
    enq_rows = _rows(frame, enqueue, "ok")
    deq_rows = _rows(frame, dequeue, "ok")
    here = present.to_numpy(dtype=object) if isinstance(present, pd.Series) else present
    here_ids = _norm(here if isinstance(here, np.ndarray) else list(here))
    (ec, dc, pc), uniques = _codes(_norm(values[enq_rows]), _flat(values[deq_rows])[0], here_ids)
    n = len(uniques)
    acked = _flags(ec, n)
    trimmed = acked & ~_flags(pc, n)
    lost = trimmed & ~_flags(dc, n)
    detail = ""
    if lost.any():
        row = _first_row(enq_rows, _hit(ec, lost))
        detail = _first(frame, [(row, f"trimmed before delivery {_show(values[row])}: enqueue ok")])
    n_acked, n_trimmed, n_lost = int(acked.sum()), int(trimmed.sum()), int(lost.sum())
    return Verdict(
        name="lost-by-retention",
        valid=not n_lost,
        counts={"acknowledged": n_acked, "trimmed": n_trimmed, "lost": n_lost},
        offending={"lost": _sorted(uniques[lost]), "trimmed": _sorted(uniques[trimmed])},
        frames={
            "retention": pd.DataFrame(
                {
                    "outcome": ["in stream", "trimmed after delivery", "lost"],
                    "count": [n_acked - n_trimmed, n_trimmed - n_lost, n_lost],
                }
            )
        },
        detail=detail,
    )
