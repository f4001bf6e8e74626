"""Judge a history after the fact: what was lost, duplicated, unexpected, or never converged.

Every checker returns a :class:`Verdict` (valid?, counts, offending ids, frames
for charts). They are vectorised with pandas so a 1,000,000-operation history is
judged in a few seconds (``benchmarks/checker.py`` measures it).

Conventions a history follows so the checkers can read it (see
:mod:`eventlab.history`): producers record ``f="enqueue"`` with the event id as
``value``; consumers record ``f="dequeue"`` ``ok`` with the event id (or a list
of ids) for every delivery they processed, including the final reads.

Introduced in lesson 03 (lost vs duplicated) and used throughout lesson 11.
"""

from __future__ import annotations

import time
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
    "lost_by_retention",
    "monotonic_versions",
    "one_terminal_state",
    "stream_event_ids",
    "total_queue",
    "watch_convergence",
]


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
    """

    name: str
    valid: bool
    counts: dict[str, int]
    offending: dict[str, list[str]] = field(default_factory=dict)
    frames: dict[str, pd.DataFrame] = field(default_factory=dict)
    convergence_seconds: float | None = None

    def __str__(self) -> str:
        """One line: name, VALID/INVALID and the non-zero counts."""
        counts = ", ".join(f"{k}={v}" for k, v in self.counts.items())
        extra = (
            f", converged in {self.convergence_seconds:.3f} s"
            if self.convergence_seconds is not None
            else ""
        )
        return f"{self.name}: {'VALID' if self.valid else 'INVALID'} ({counts}{extra})"


HistoryLike = History | pd.DataFrame


def _frame(history: HistoryLike) -> pd.DataFrame:
    if isinstance(history, History):
        return history.frame()
    return history


def _text(values: pd.Series | np.ndarray[Any, Any]) -> pd.Series:
    """Return the values as an object Series of ``str`` (ids), converting only non-strings.

    Object dtype on purpose: pandas hashes plain Python strings faster than its
    ``str`` dtype, which matters at a million operations.
    """
    raw = values.to_numpy(dtype=object) if isinstance(values, pd.Series) else values
    if pd.api.types.infer_dtype(raw, skipna=False) == "string":
        return pd.Series(raw, dtype=object)  # all str already: a C-speed scan, no copy
    is_str = np.fromiter((type(v) is str for v in raw), dtype=bool, count=len(raw))
    if not is_str.all():
        raw = raw.copy()
        raw[~is_str] = [str(v) for v in raw[~is_str]]
    return pd.Series(raw, dtype=object)


def _index(values: Any) -> pd.Index:
    # object dtype: pandas 3 would infer its slower "str" dtype for an Index of strings
    index: pd.Index = pd.Index(values, dtype=object)
    return index


def _ids(values: pd.Series) -> pd.Series:
    """Flatten a value column whose cells are ids or lists of ids into a Series of str ids."""
    raw = values.to_numpy(dtype=object)
    if pd.api.types.infer_dtype(raw, skipna=False) == "string":
        return pd.Series(raw, dtype=object)  # plain ids, no lists: nothing to flatten
    is_list = np.fromiter((isinstance(v, list | tuple) for v in raw), dtype=bool, count=len(raw))
    if is_list.any():
        flat = pd.Series(raw[~is_list], dtype=object)
        nested = pd.Series(raw[is_list], dtype=object).explode().dropna()
        raw = pd.concat([flat, nested], ignore_index=True).to_numpy(dtype=object)
    return _text(raw)


def _select(frame: pd.DataFrame, f: str, types: Collection[str]) -> pd.DataFrame:
    fmask = frame["f"].to_numpy(dtype=object) == f
    sub: pd.DataFrame = frame[fmask]
    out: pd.DataFrame = sub[sub["type"].isin(list(types))]
    return out


def _sorted(values: Iterable[str]) -> list[str]:
    return sorted(str(v) for v in values)


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
    out) that was dequeued after all.

    Returns:
        A verdict; frames ``"outcomes"`` (outcome, count) and ``"deliveries"``
        (id, deliveries).
    """
    frame = _frame(history)
    enq = frame[frame["f"].to_numpy(dtype=object) == enqueue]
    etype = enq["type"].to_numpy(dtype=object)
    evalue = _text(enq["value"])
    attempted = pd.unique(evalue[etype == "invoke"])
    acked = pd.unique(evalue[etype == "ok"])
    failed = pd.unique(evalue[etype == "fail"])
    settled = pd.unique(evalue[(etype == "ok") | (etype == "fail")])
    uncertain = _index(attempted)[~_index(attempted).isin(settled)]  # info or no reply

    deliveries = _ids(_select(frame, dequeue, ("ok",))["value"]).value_counts()
    delivered = deliveries.index

    lost = _index(acked)[~_index(acked).isin(delivered)]
    duplicated = deliveries.index[deliveries.to_numpy() > 1]
    # possible = attempted and not certainly failed, or acknowledged (isin, no sorted union)
    attempted_ok = _index(attempted)[~_index(attempted).isin(failed)]
    unexpected = delivered[~(delivered.isin(attempted_ok) | delivered.isin(acked))]
    recovered = uncertain[uncertain.isin(delivered)]
    counts = {
        "attempted": len(attempted),
        "acknowledged": len(acked),
        "delivered": len(delivered),
        "lost": len(lost),
        "duplicated": len(duplicated),
        "unexpected": len(unexpected),
        "recovered": len(recovered),
    }
    valid = not lost.size and not unexpected.size and (allow_duplicates or not duplicated.size)
    outcomes = pd.DataFrame(
        {
            "outcome": ["delivered once", "duplicated", "lost", "unexpected", "recovered"],
            "count": [
                int((deliveries.to_numpy() == 1).sum()),
                len(duplicated),
                len(lost),
                len(unexpected),
                len(recovered),
            ],
        }
    )
    return Verdict(
        name="total-queue",
        valid=bool(valid),
        counts=counts,
        offending={
            "lost": _sorted(lost),
            "duplicated": _sorted(duplicated),
            "unexpected": _sorted(unexpected),
            "recovered": _sorted(recovered),
        },
        frames={
            "outcomes": outcomes,
            "deliveries": deliveries.rename_axis("id").reset_index(name="deliveries"),
        },
    )


def exactly_once(
    history: HistoryLike,
    *,
    effects: Iterable[str] | pd.Series | None = None,
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
        and frame ``"effects"`` (id, applied).
    """
    frame = _frame(history)
    enq = frame[frame["f"].to_numpy(dtype=object) == enqueue]
    etype = enq["type"].to_numpy(dtype=object)
    evalue = _text(enq["value"])
    acked = _index(pd.unique(evalue[etype == "ok"]))
    attempted = _index(pd.unique(evalue[etype == "invoke"]))
    failed = pd.unique(evalue[etype == "fail"])
    # an effect may come only from an enqueue that was attempted and did not
    # certainly fail, or was acknowledged (the same rule as total_queue)
    attempted_ok = attempted[~attempted.isin(failed)]
    if effects is None:
        applied_ids = _ids(_select(frame, effect, ("ok",))["value"])
    else:
        applied_ids = pd.Series(list(effects) if not isinstance(effects, pd.Series) else effects)
        applied_ids = _text(applied_ids)
    applied = applied_ids.value_counts()
    # append, not union: union sorts, an object argsort that costs a second at 1M ids
    per_id = applied.reindex(acked.append(applied.index[~applied.index.isin(acked)]), fill_value=0)
    missing = acked[~acked.isin(applied.index)]
    duplicated = applied.index[applied.to_numpy() > 1]
    unexpected = applied.index[~(applied.index.isin(attempted_ok) | applied.index.isin(acked))]
    counts = {
        "events": len(acked),
        "once": int((applied.reindex(acked, fill_value=0).to_numpy() == 1).sum()),
        "missing": len(missing),
        "duplicated": len(duplicated),
        "unexpected": len(unexpected),
    }
    return Verdict(
        name="exactly-once",
        valid=not (missing.size or duplicated.size or unexpected.size),
        counts=counts,
        offending={
            "missing": _sorted(missing),
            "duplicated": _sorted(duplicated),
            "unexpected": _sorted(unexpected),
        },
        frames={"effects": per_id.rename_axis("id").reset_index(name="applied")},
    )


def one_terminal_state(
    transitions: pd.DataFrame,
    *,
    terminal: Collection[str],
    aggregates: Iterable[str] | None = None,
) -> Verdict:
    """Check that every aggregate (order) ended in exactly one terminal state.

    Args:
        transitions: One row per state reached: columns ``aggregate`` and ``state``.
        terminal: The terminal states (``{"OrderCompleted", "OrderCancelled"}``).
        aggregates: Every aggregate that must have ended; default: those seen.

    Returns:
        A verdict with counts ``aggregates``, ``one``, ``none``, ``many`` and frame
        ``"terminal"`` (aggregate, terminal_states).
    """
    agg = _text(transitions["aggregate"])  # object str: faster than pandas' str dtype
    is_terminal = transitions["state"].isin(list(terminal)).to_numpy()
    per = agg[is_terminal].value_counts()
    expected = _index(pd.unique(agg)) if aggregates is None else _index(list(aggregates))
    per = per.reindex(expected.append(per.index[~per.index.isin(expected)]), fill_value=0)
    none = per.index[per.to_numpy() == 0]
    many = per.index[per.to_numpy() > 1]
    return Verdict(
        name="one-terminal-state",
        valid=not (none.size or many.size),
        counts={
            "aggregates": len(per),
            "one": int((per.to_numpy() == 1).sum()),
            "none": len(none),
            "many": len(many),
        },
        offending={"none": _sorted(none), "many": _sorted(many)},
        frames={"terminal": per.rename_axis("aggregate").reset_index(name="terminal_states")},
    )


def monotonic_versions(observations: pd.DataFrame) -> Verdict:
    """Check that each aggregate's observed version never goes backwards.

    Args:
        observations: Columns ``aggregate`` and ``version`` (int), in observation
            order, or with a ``time`` column to sort by (stable).

    Returns:
        A verdict with counts ``observations``, ``aggregates``, ``regressions`` and
        frame ``"regressions"`` (aggregate, before, after[, time]).
    """
    obs = observations
    if "time" in obs.columns:
        obs = obs.sort_values("time", kind="stable")
    obs = obs.reset_index(drop=True)
    versions = obs["version"].astype("int64")
    previous = versions.groupby(obs["aggregate"], sort=False).shift()
    bad = (versions < previous).to_numpy()
    columns = ["aggregate"] + (["time"] if "time" in obs.columns else [])
    regressions = obs.loc[bad, columns].assign(before=previous[bad], after=versions[bad])
    offenders = pd.unique(regressions["aggregate"].astype(str))
    return Verdict(
        name="monotonic-versions",
        valid=not len(regressions),
        counts={
            "observations": len(obs),
            "aggregates": int(obs["aggregate"].nunique()),
            "regressions": len(regressions),
        },
        offending={"regressed": _sorted(offenders)},
        frames={"regressions": regressions.reset_index(drop=True)},
    )


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

    Args:
        samples: Columns ``time`` (datetime64 UTC) and ``disagreeing`` (int).
        heal: When the last fault stopped.
        within: Seconds after ``heal`` by which the views must agree for good.
        offending: Keys still disagreeing at the last sample.

    Returns:
        A verdict with ``convergence_seconds`` = seconds from ``heal`` to the first
        sample after which every sample agrees (``None`` if the last one disagrees);
        valid when that is at most ``within``. Frame ``"convergence"``.
    """
    frame = samples[["time", "disagreeing"]].sort_values("time").reset_index(drop=True)
    heal_ts = pd.Timestamp(heal)
    heal_ts = heal_ts.tz_localize(UTC) if heal_ts.tzinfo is None else heal_ts.tz_convert(UTC)
    dis = frame["disagreeing"].to_numpy()
    seconds: float | None = None
    if len(dis) and dis[-1] == 0:
        # last sample that disagreed; the next one starts the settled run
        bad = np.flatnonzero(dis != 0)
        first_ok = 0 if not bad.size else int(bad[-1]) + 1
        settled = frame["time"].iloc[first_ok]
        seconds = max(0.0, (settled - heal_ts).total_seconds())
    after = frame[frame["time"] >= heal_ts]
    return Verdict(
        name="convergence",
        valid=seconds is not None and seconds <= within,
        counts={
            "samples": len(frame),
            "max_disagreeing_after_heal": int(after["disagreeing"].max()) if len(after) else 0,
            "disagreeing_at_end": int(dis[-1]) if len(dis) else 0,
        },
        offending={"disagreeing": _sorted(offending)},
        frames={"convergence": frame},
        convergence_seconds=seconds,
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
    rows = list(samples or [])
    deadline = time.monotonic() + within - (datetime.now(UTC) - healed).total_seconds()
    while True:
        keys = diff(projection(), truth())
        rows.append((datetime.now(UTC), len(keys)))
        if not keys or time.monotonic() > deadline:
            break
        time.sleep(interval)
    frame = pd.DataFrame(
        {
            "time": pd.to_datetime([r[0] for r in rows], utc=True),
            "disagreeing": np.array([r[1] for r in rows], dtype=np.int64),
        }
    )
    return convergence(frame, heal=healed, within=within, offending=keys)


def stream_event_ids(client: redis.Redis, stream: str) -> list[str]:
    """Return the event ids (the ``id`` field) of every entry still in ``stream``."""
    return [fields.get("id", entry) for entry, fields in streams.entries(client, stream)]


def lost_by_retention(
    history: HistoryLike,
    *,
    present: Iterable[str],
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
    enq = _select(frame, enqueue, ("ok",))
    acked = _index(pd.unique(_text(enq["value"])))
    delivered = _index(pd.unique(_ids(_select(frame, dequeue, ("ok",))["value"])))
    here = _index(pd.unique(_text(pd.Series(list(present), dtype=object))))
    trimmed = acked[~acked.isin(here)]
    lost = trimmed[~trimmed.isin(delivered)]
    return Verdict(
        name="lost-by-retention",
        valid=not lost.size,
        counts={
            "acknowledged": len(acked),
            "trimmed": len(trimmed),
            "lost": len(lost),
        },
        offending={"lost": _sorted(lost), "trimmed": _sorted(trimmed)},
        frames={
            "retention": pd.DataFrame(
                {
                    "outcome": ["in stream", "trimmed after delivery", "lost"],
                    "count": [len(acked) - len(trimmed), len(trimmed) - len(lost), len(lost)],
                }
            )
        },
    )
