"""Anti-entropy: compare stored read models with the truth folded from the log, repair the drift.

Retries and idempotency make a consumer apply each event it *receives* exactly
once. They cannot repair a read model that drifted for another reason: an
update lost between ack and write, an operator's manual edit, a stale replica
writing back, a bug in an older version. An anti-entropy job can. It folds the
log (the truth), compares the stored hashes field by field, and writes only
the differences::

    def truth():
        fold = projections.rebuild(client, STOCK_LEVELS)
        return {stock_key: fold.state, stock_key + ":versions": fold.versions}

    repair = reconcile.reconcile(client, truth)   # repair.repaired == 0 on a second run

The job WATCHes every key it compares and folds the truth *after* watching, so
a live writer that changes a key meanwhile makes the job start over instead of
overwriting newer data with an older truth. Values are compared as text, the
way a hash stores them.

Introduced in lesson 11 (a reconciliation job that repairs drift).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd
import redis

from eventlab._errors import EventlabError

__all__ = ["Repair", "drift", "reconcile"]

Truth = Callable[[], Mapping[str, Mapping[str, Any]]]
"""Returns hash key → the fields that hash must hold (field → value)."""


@dataclass(frozen=True, slots=True)
class Repair:
    """What one reconciliation run found, and fixed unless it was a dry run.

    Attributes:
        checked: Fields compared, over every key (in the stored hash or in the truth).
        written: ``(key, field)`` pairs set to the truth's value (missing or different).
        removed: ``(key, field)`` pairs deleted (stored, but not in the truth).
        applied: Whether the repairs were written (``False`` for a dry run).
        attempts: Runs needed (more than 1 when a live writer changed a key meanwhile).
    """

    checked: int
    written: tuple[tuple[str, str], ...]
    removed: tuple[tuple[str, str], ...]
    applied: bool
    attempts: int = 1

    @property
    def repaired(self) -> int:
        """How many fields differed from the truth."""
        return len(self.written) + len(self.removed)

    def explain(self, *, tampered: Collection[tuple[str, str]]) -> pd.DataFrame:
        """One row per repaired field, with its cause: a field ``tampered`` with, or else lag.

        Lesson 11 uses it to account for "repaired N": the fields tampered with
        (``tampered``, as ``(key, field)``; a ``<key>:versions`` field counts with its key)
        and the rest — changes already in the log that the live projector had not
        applied yet when the job ran (lag, not drift).

        Returns:
            Columns ``key``, ``field``, ``action`` (``written``/``removed``), ``cause``
            (``drift``/``lag``); one row per repaired field, so ``len()`` is :attr:`repaired`.
        """
        known = set(tampered)
        rows = [
            {
                "key": key,
                "field": name,
                "action": action,
                "cause": "drift" if (key.removesuffix(":versions"), name) in known else "lag",
            }
            for action, pairs in (("written", self.written), ("removed", self.removed))
            for key, name in pairs
        ]
        return pd.DataFrame(rows, columns=["key", "field", "action", "cause"])

    def __str__(self) -> str:
        """One line: how many fields were checked and repaired."""
        verb = "repaired" if self.applied else "would repair"
        return (
            f"checked {self.checked} field(s): {verb} {self.repaired} "
            f"({len(self.written)} written, {len(self.removed)} removed)"
        )


def drift(stored: Mapping[str, Any], truth: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """Return ``(fields to write, fields to remove)`` that make ``stored`` equal ``truth``.

    Values are compared as text (``5 == "5"``), as a Redis hash stores them.
    """
    write = sorted(f for f, v in truth.items() if f not in stored or str(stored[f]) != str(v))
    remove = sorted(f for f in stored if f not in truth)
    return write, remove


def reconcile(
    client: redis.Redis, truth: Truth, *, dry_run: bool = False, attempts: int = 10
) -> Repair:
    """Make each stored hash equal its truth; write only the differing fields, in one MULTI.

    Args:
        client: A sync client (``decode_responses=True``).
        truth: Called after the keys are watched; returns hash key → fields it must hold.
            Fold the log here, so the truth is never older than what is stored.
        dry_run: Only report the drift; write nothing.
        attempts: Runs before giving up when live writers keep changing the keys.

    Raises:
        EventlabError: The keys changed under every one of ``attempts`` runs.
    """
    keys = sorted(truth())
    if not keys:
        return Repair(0, (), (), applied=not dry_run)
    with client.pipeline(transaction=True) as pipe:
        for attempt in range(1, attempts + 1):
            try:
                pipe.watch(*keys)  # type: ignore[no-untyped-call]
                wanted = truth()
                if sorted(wanted) != keys:  # the truth grew a key: watch that one too
                    keys = sorted(wanted)
                    pipe.unwatch()
                    continue
                checked = 0
                written: list[tuple[str, str]] = []
                removed: list[tuple[str, str]] = []
                for key in keys:
                    stored: dict[str, str] = pipe.hgetall(key)  # type: ignore[assignment]
                    write, remove = drift(stored, wanted[key])
                    checked += len(set(stored) | set(wanted[key]))
                    written += [(key, f) for f in write]
                    removed += [(key, f) for f in remove]
                if dry_run or not (written or removed):
                    pipe.unwatch()
                    return Repair(checked, tuple(written), tuple(removed), not dry_run, attempt)
                pipe.multi()
                for key in keys:
                    fields = [f for k, f in written if k == key]
                    if fields:
                        pipe.hset(key, mapping={f: str(wanted[key][f]) for f in fields})
                    gone = [f for k, f in removed if k == key]
                    if gone:
                        pipe.hdel(key, *gone)
                pipe.execute()
                return Repair(
                    checked, tuple(written), tuple(removed), applied=True, attempts=attempt
                )
            except redis.WatchError:
                continue  # a live writer changed a key: fold again, compare again
    raise EventlabError(
        f"the keys kept changing during {attempts} reconciliation runs",
        fix="run the job again when writes are quieter, or raise attempts=",
    )
