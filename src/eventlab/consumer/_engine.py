"""The subscription engine: one handler on one (stream, group), its reader and reclaimer.

Part of :mod:`eventlab.consumer` (lessons 03 and 04); import from there.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import redis
import redis.asyncio
from redis.client import NEVER_DECODE

from eventlab.backpressure import alost_by_retention
from eventlab.consumer._options import SubscriptionOptions
from eventlab.consumer._types import (
    _COMMIT,
    _CONNECTION_ERRORS,
    _OOM_RETRY,
    _RECLAIM,
    _WITH_EFFECTS,
    ConsumerError,
    Effects,
    Handler,
    Health,
    HealthState,
    _decode_fields,
    _dumps,
    _Entry,
    _is_oom,
    _out_of_memory,
    _Plan,
    _text,
    _Undecodable,
    seen_key,
)
from eventlab.envelope import EnvelopeError, Event, _from_text
from eventlab.metrics import EventRow, Metrics, Outcome
from eventlab.streams import acreate_group, dlq_key

logger = logging.getLogger("eventlab.consumer")
_new_row = tuple.__new__  # an EventRow from a 13-tuple, without NamedTuple._replace's cost


class Subscription:
    """One handler on one (stream, group): a reader and a reclaimer task.

    Created by :meth:`Reliable.subscriber`; read :attr:`health` to watch it.
    """

    def __init__(
        self,
        handler: Handler,
        *,
        stream: str,
        options: SubscriptionOptions,
        metrics: Metrics | None = None,
    ) -> None:
        """Store the options (resolved and checked by :meth:`Reliable.subscriber`)."""
        if options.group is None or options.consumer is None:
            raise ConsumerError(
                f"options for {stream} are not resolved", fix="declare it with Reliable.subscriber"
            )
        self.handler = handler
        self.options = options
        self.stream = stream
        self.group: str = options.group
        self.consumer: str = options.consumer
        self.batch = options.batch or 100
        self.block = 0.2 if options.block is None else options.block
        self.reclaim_every = (
            options.reclaim_every
            if options.reclaim_every is not None
            else min(1.0, max(0.05, options.min_idle / 4))
        )
        self.metrics = metrics
        self.dlq = dlq_key(stream)
        self.seen = seen_key(stream, self.group)
        self._rng = random.Random(options.seed)  # noqa: S311 - jitter, not secrets
        self._pass_effects = _wants_effects(handler)
        self._is_async = inspect.iscoroutinefunction(handler)
        self._queue: asyncio.Queue[list[_Entry]] = asyncio.Queue(maxsize=2)
        self._backlog: list[list[_Entry]] = []  # own pending entries re-read at start
        self._held: set[str] = set()  # entry ids read or claimed and not yet committed
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._state: HealthState = "stopped"
        self._reason = ""
        self._since = time.time()
        self._counts = dict.fromkeys(
            ("ok", "retried", "dead", "duplicates", "reclaimed", "lost"), 0
        )
        self._client: redis.asyncio.Redis | None = None

    def __repr__(self) -> str:
        """Show the stream, group, consumer and state."""
        return f"<Subscription {self.stream} group={self.group} {self.consumer} {self._state}>"

    @property
    def health(self) -> Health:
        """A snapshot of the state and counters."""
        return Health(
            stream=self.stream,
            group=self.group,
            consumer=self.consumer,
            state=self._state,
            reason=self._reason,
            since=self._since,
            **self._counts,
        )

    def _set_state(self, state: HealthState, reason: str = "") -> None:
        if state != self._state or reason != self._reason:
            self._state, self._reason, self._since = state, reason, time.time()

    # -- lifecycle --------------------------------------------------------------

    async def _start(self, client: redis.asyncio.Redis) -> None:
        self._client = client
        self._stopping.clear()
        # a previous run cut short (stop timeout) may have left ids behind: the
        # server still has those entries pending, and the reclaimer must see them
        self._held.clear()
        self._backlog = []
        self._queue = asyncio.Queue(maxsize=2)
        self._set_state("starting")
        await self._ensure_group(create=True)
        self._tasks = [
            asyncio.create_task(self._read_loop(), name=f"eventlab-read-{self.stream}"),
            asyncio.create_task(self._reclaim_loop(), name=f"eventlab-reclaim-{self.stream}"),
        ]

    async def _finish(self, task: asyncio.Task[None], what: str, timeout: float) -> None:  # noqa: ASYNC109
        """Wait up to ``timeout`` seconds for ``task``; log (never raise) if it cannot finish."""
        try:
            await asyncio.wait_for(task, timeout)
        except (TimeoutError, asyncio.CancelledError):
            logger.warning("%s: %s not finished in %.1f s", self, what, timeout)
        except _CONNECTION_ERRORS as exc:
            logger.warning("%s: %s stopped with the broker unreachable: %s", self, what, exc)

    async def _stop(self, *, timeout: float) -> None:  # noqa: ASYNC109 - seconds, documented
        self._stopping.set()
        if not self._tasks:
            return
        reader, reclaimer = self._tasks
        # not cancelled: a reclaim call in flight has already claimed its entries (the
        # server counted a delivery); the reclaimer sees _stopping and hands them back
        await self._finish(reclaimer, "reclaimer", timeout)
        await self._finish(reader, "in-flight batch", timeout)
        await self._release_queued()
        self._tasks = []
        if self._state != "failed":
            self._set_state("stopped")

    async def _release_queued(self) -> None:
        """Hand reclaimed-but-unhandled entries back at once."""
        entries: list[_Entry] = [e for chunk in self._backlog for e in chunk]
        self._backlog.clear()
        while not self._queue.empty():
            entries.extend(self._queue.get_nowait())
        await self._release(entries)

    async def _release(self, entries: Sequence[_Entry]) -> None:
        """Give claimed entries back unhandled: idle at ``min_idle``, delivery count as before.

        Another consumer's reclaimer takes them on its next scan, and the claim that
        never reached a handler does not count as a delivery (``RETRYCOUNT``), so it
        brings no entry nearer to ``max_deliveries``.
        """
        self._held.difference_update(entry_id for entry_id, _, _ in entries)
        if not entries or self._client is None:
            return
        by_count: dict[int, list[str]] = {}
        for entry_id, _, delivery in entries:
            by_count.setdefault(max(0, delivery - 1), []).append(entry_id)
        idle = int(self.options.min_idle * 1000)
        with contextlib.suppress(redis.RedisError, *_CONNECTION_ERRORS):
            async with self._client.pipeline(transaction=False) as pipe:
                for count, ids in by_count.items():
                    pipe.xclaim(
                        self.stream,
                        self.group,
                        self.consumer,
                        0,
                        list[Any](ids),
                        idle=idle,
                        retrycount=count,
                        justid=True,
                    )
                await pipe.execute()

    async def _offer(self, entries: list[_Entry]) -> None:
        """Queue claimed entries for the reader, or release them if the subscription stops."""
        if self._stopping.is_set():
            await self._release(entries)
            return
        put = asyncio.ensure_future(self._queue.put(entries))
        stop = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({put, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if not put.done():
                put.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await put
        if put.cancelled():  # the reader stopped taking batches: hand them back
            await self._release(entries)

    async def _ensure_group(self, *, create: bool) -> bool:
        assert self._client is not None
        position, entries_read = await self._group_position()
        try:
            created = await acreate_group(
                self._client, self.stream, self.group, start=position, entries_read=entries_read
            )
        except redis.ResponseError as exc:
            if not _is_oom(exc):
                raise
            # refused before the server looked: does the group exist?
            with contextlib.suppress(redis.ResponseError):
                groups: Any = await self._client.xinfo_groups(self.stream)
                if any(g["name"] == self.group for g in groups):
                    return False
            raise _out_of_memory(exc, f"create consumer group {self.group!r}") from None
        if not created:
            return False
        if not create:
            logger.error(
                "%s: consumer group %r was missing on %s and was recreated at %r "
                "(recreate_group=True): events the broker lost are gone",
                self,
                self.group,
                self.stream,
                self.options.start,
            )
        return True

    async def _group_position(self) -> tuple[str, int | None]:
        """The explicit start as an id plus ENTRIESREAD, so lag and retention loss are exact."""
        assert self._client is not None
        if self.options.start == "0":
            return "0", 0
        if self.options.start != "$":
            return self.options.start, None
        try:
            info: Any = await self._client.xinfo_stream(self.stream)
        except redis.ResponseError:  # no stream yet: "$" and "0" mean the same
            return "0", 0
        # one snapshot gives both, so the pair is consistent even while producers write
        return str(info["last-generated-id"]), int(info["entries-added"])

    async def _check_retention(self) -> None:
        """Say loudly if entries were trimmed before this group read them (consumer was down)."""
        assert self._client is not None
        try:
            loss = await alost_by_retention(self._client, self.stream, self.group)
        except (LookupError, redis.ResponseError):
            return  # the group or stream is gone: the reader's NOGROUP reports it
        if loss.lost:
            self._counts["lost"] += loss.lost
            logger.warning(
                "%s: %d entries of %s were trimmed (MAXLEN) before group %r read them: "
                "lost by retention",
                self,
                loss.lost,
                self.stream,
                self.group,
            )

    # -- reading ----------------------------------------------------------------

    async def _read_loop(self) -> None:
        try:
            await self._consume()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.exception(
                "%s: stopped by an unexpected error; other consumers of the group will "
                "reclaim its pending entries after min_idle",
                self,
            )
            self._set_state("failed", f"{type(exc).__name__}: {exc}")
            self._stopping.set()  # the reclaimer stops too: nothing would handle its claims

    async def _consume(self) -> None:
        inflight: asyncio.Task[None] | None = None
        await self._guarded(self._check_retention)
        await self._guarded(self._recover_own)
        if self._state == "starting":
            self._set_state("running")
        try:
            while not self._stopping.is_set():
                if self._backlog:
                    batch = self._backlog.pop(0)
                elif not self._queue.empty():
                    batch = self._queue.get_nowait()
                else:
                    batch = await self._read()
                if not batch:
                    continue
                plan = await self._handle(batch, received=time.time())
                if inflight is not None:
                    await inflight
                inflight = asyncio.create_task(self._commit_until_done(plan))
        finally:
            if inflight is not None:
                await inflight

    async def _recover_own(self) -> None:
        """A restarted consumer with the same name re-reads its own pending entries first."""
        assert self._client is not None
        _, entries, deleted = await _RECLAIM(
            self._client,
            [self.stream],
            [self.group, self.consumer, 0, "-", self.batch * 10, "own", "[]"],
        )
        self._note_deleted([_text(d) for d in deleted])
        # the reclaimer starts alongside: what it claimed for this consumer first is
        # pending here too, but already held (queued): not handled a second time
        own = [e for e in _entries(entries) if e[0] not in self._held]
        # kept aside, not queued: the reader itself would block on a full queue
        for start in range(0, len(own), self.batch):
            chunk = own[start : start + self.batch]
            self._held.update(entry_id for entry_id, _, _ in chunk)
            self._backlog.append(chunk)

    async def _read(self) -> list[_Entry]:
        assert self._client is not None
        try:
            # replies stay bytes: one entry that is not UTF-8 must not fail the batch
            reply: Any = await self._client.execute_command(  # type: ignore[no-untyped-call]
                "XREADGROUP", "GROUP", self.group, self.consumer,
                "COUNT", self.batch, "BLOCK", max(1, int(self.block * 1000)),
                "STREAMS", self.stream, ">",
                **{NEVER_DECODE: []},
            )  # fmt: skip
        except redis.ResponseError as exc:
            await self._on_response_error(exc)
            return []
        except _CONNECTION_ERRORS as exc:
            await self._on_disconnect(exc)
            return []
        if self._state not in {"running", "out-of-memory"}:
            self._set_state("running")
        if not reply:
            return []
        # unparsed (Reliable sets _unparsed as the XREADGROUP callback: redis-py's parsing
        # built a dict per entry that _decode_fields then rebuilt): [[stream, rows]], or
        # {stream: rows} over RESP3
        rows = reply[0][1] if type(reply) is list else next(iter(reply.values()))
        batch = [(_text(entry_id), _decode_fields(fields), 1) for entry_id, fields in rows]
        self._held.update(entry_id for entry_id, _, _ in batch)
        return batch

    async def _on_disconnect(self, exc: BaseException) -> None:
        if self._state != "reconnecting":
            logger.warning("%s: broker unreachable (%s); reconnecting", self, exc)
        self._set_state("reconnecting", f"{type(exc).__name__}: {exc}")
        await self._pause(0.2)

    async def _on_response_error(self, exc: redis.ResponseError) -> None:
        if "NOGROUP" not in str(exc):
            raise exc
        if self._state != "group-missing":
            logger.error(
                "%s: consumer group %r is gone from %s (did the broker lose its data?); %s",
                self,
                self.group,
                self.stream,
                "recreating it"
                if self.options.recreate_group
                else "not recreating it (pass recreate_group=True to opt in)",
            )
        self._set_state("group-missing", str(exc))
        if self.options.recreate_group:
            with contextlib.suppress(redis.RedisError, *_CONNECTION_ERRORS):
                await self._ensure_group(create=False)
                self._set_state("running")
                return
        await self._pause(1.0)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _guarded(self, step: Callable[[], Awaitable[None]]) -> None:
        """Run ``step`` until it succeeds, riding out disconnects and a missing group."""
        while not self._stopping.is_set():
            try:
                await step()
            except redis.ResponseError as exc:
                await self._on_response_error(exc)
            except _CONNECTION_ERRORS as exc:
                await self._on_disconnect(exc)
            else:
                return

    # -- reclaiming -------------------------------------------------------------

    async def _reclaim_loop(self) -> None:
        start = "-"
        min_idle_ms = max(1, int(self.options.min_idle * 1000))
        while not self._stopping.is_set():
            # the script skips entries this subscription still holds (queued or being
            # handled): claiming them would reset their idle time, hiding a slow
            # handler from the other consumers, and count a delivery that never was
            held = _dumps(sorted(self._held))
            assert self._client is not None
            try:
                raw_start, entries, deleted = await _RECLAIM(
                    self._client,
                    [self.stream],
                    [self.group, self.consumer, min_idle_ms, start, self.batch, "auto", held],
                )
            except (redis.ResponseError, *_CONNECTION_ERRORS):
                # the reader reports disconnects and a missing group; just wait
                start = "-"
                await self._pause(self.reclaim_every)
                continue
            start = _text(raw_start)
            self._note_deleted([_text(d) for d in deleted])
            # and what became held while the script ran is not handled twice either
            fresh = [e for e in _entries(entries) if e[0] not in self._held]
            if fresh:
                self._counts["reclaimed"] += len(fresh)
                self._held.update(entry_id for entry_id, _, _ in fresh)
                await self._offer(fresh)
            if start == "0-0":  # a full pass: rest, then start over
                start = "-"
                await self._pause(self.reclaim_every)

    def _note_deleted(self, deleted: Sequence[str]) -> None:
        if deleted:
            self._counts["lost"] += len(deleted)
            logger.warning(
                "%s: %d pending entries were trimmed from the stream before they were "
                "handled (lost by retention): %s",
                self,
                len(deleted),
                ", ".join(deleted[:5]),
            )

    # -- handling ---------------------------------------------------------------

    async def _handle(self, batch: list[_Entry], *, received: float) -> _Plan:
        plan = _Plan()
        for entry_id, fields, delivery in batch:
            if isinstance(fields, _Undecodable):
                self._dead_raw(plan, entry_id, fields, attempt=delivery, received=received)
                continue
            try:
                event = _from_text(Event, fields)
            except EnvelopeError as exc:
                self._dead(
                    plan,
                    entry_id,
                    fields=fields,
                    event=None,
                    attempt=delivery,
                    received=received,
                    exc=exc,
                    delivery=delivery,
                )
                continue
            if delivery > self.options.max_deliveries:
                reason = (
                    f"delivered {delivery} times without an ack (max_deliveries="
                    f"{self.options.max_deliveries}): a consumer crashed or stalled on it each time"
                )
                self._dead_reason(
                    plan,
                    entry_id,
                    event,
                    attempt=delivery,
                    received=received,
                    reason=reason,
                    error="Redelivery",
                )
                continue
            if self.options.validate is not None:
                try:
                    event = self.options.validate(event) or event
                except Exception as exc:  # noqa: BLE001 - any validation failure is permanent
                    self._dead_reason(
                        plan,
                        entry_id,
                        event,
                        attempt=delivery,
                        received=received,
                        reason=f"failed validation: {type(exc).__name__}: {exc}",
                        error=_error_name(type(exc)),
                    )
                    continue
            await self._run_handler(plan, entry_id, event, delivery, received)
        return plan

    async def _run_handler(
        self, plan: _Plan, entry_id: str, event: Event, delivery: int, received: float
    ) -> None:
        deadline = time.monotonic() + self.options.retry_timeout
        first = (delivery - 1) * self.options.attempts
        tried = 0
        while True:
            tried += 1
            effects = Effects(stream=self.stream, cluster_safe=self.options.cluster_safe)
            try:
                result = self.handler(event, effects) if self._pass_effects else self.handler(event)
                if self._is_async or inspect.isawaitable(result):
                    await result
            except Exception as exc:  # noqa: BLE001 - non-permanent errors are transient by contract
                permanent = isinstance(exc, self.options.permanent)
                if not permanent:
                    wait = self.options.backoff.delay(first + tried, self._rng)
                    if tried < self.options.attempts and time.monotonic() + wait < deadline:
                        self._row(event, received, first + tried, "retry")
                        self._counts["retried"] += 1
                        await asyncio.sleep(wait)
                        continue
                if permanent or delivery >= self.options.max_deliveries:
                    self._dead(
                        plan,
                        entry_id,
                        fields=None,
                        event=event,
                        attempt=first + tried,
                        received=received,
                        exc=exc,
                        delivery=delivery,
                    )
                    return
                # release for redelivery after a backoff: the reclaimer picks it up
                delay = self.options.backoff.delay(delivery, self._rng)
                idle = max(0, int((self.options.min_idle - delay) * 1000))
                plan.add(entry_id, event.id, "retry", (str(idle),))
                plan.rows.append(self._event_row(event, received, first + tried, "retry"))
                logger.info("%s: %s failed (%r), redelivery in %.2f s", self, entry_id, exc, delay)
                return
            else:
                items = plan.ops(effects.ops)
                plan.add(entry_id, event.id if self.options.dedupe else "", "ok", items)
                plan.rows.append(self._event_row(event, received, first + tried, "ok"))
                return

    def _dead(
        self,
        plan: _Plan,
        entry_id: str,
        *,
        fields: Mapping[str, str] | None,
        event: Event | None,
        attempt: int,
        received: float,
        exc: BaseException,
        delivery: int,
    ) -> None:
        kind = type(exc)
        error = _error_name(kind)
        if isinstance(exc, EnvelopeError):
            reason = f"not a valid event: {'; '.join(f'{k}: {v}' for k, v in exc.problems.items())}"
        elif isinstance(exc, self.options.permanent):
            reason = f"permanent error: {kind.__name__}: {exc}"
        else:
            reason = (
                f"failed on all {delivery} deliveries "
                f"(max_deliveries={self.options.max_deliveries}): {kind.__name__}: {exc}"
            )
        if event is None:
            text = dict(fields or {})
            plan.add(entry_id, "", "dead", (reason, error, str(attempt)))
            plan.rows.append(self._raw_row(text, entry_id, received, attempt))
            return
        self._dead_reason(
            plan, entry_id, event, attempt=attempt, received=received, reason=reason, error=error
        )

    def _dead_raw(
        self, plan: _Plan, entry_id: str, fields: _Undecodable, *, attempt: int, received: float
    ) -> None:
        """Dead-letter an entry whose bytes are not UTF-8 (the script copies them raw)."""
        reason = f"not a valid event: not UTF-8: {fields.problem}"
        plan.add(entry_id, "", "dead", (reason, "UnicodeDecodeError", str(attempt)))
        plan.rows.append(self._raw_row(fields, entry_id, received, attempt))

    def _dead_reason(
        self,
        plan: _Plan,
        entry_id: str,
        event: Event,
        *,
        attempt: int,
        received: float,
        reason: str,
        error: str,
    ) -> None:
        plan.add(entry_id, event.id, "dead", (reason, error, str(attempt)))
        plan.rows.append(self._event_row(event, received, attempt, "dead"))

    def _event_row(self, event: Event, received: float, attempt: int, outcome: Outcome) -> EventRow:
        return _new_row(
            EventRow,
            (
                event.id,
                event.type,
                event.correlationid,
                event.causationid,
                event.source,
                self.stream,
                self.group,
                self.consumer,
                event.time,
                received,
                0.0,
                attempt,
                outcome,
            ),
        )

    def _raw_row(
        self, fields: Mapping[str, str], entry_id: str, received: float, attempt: int
    ) -> EventRow:
        """The row of an entry dead-lettered before it became an event (what its fields say)."""
        return EventRow(
            fields.get("id") or entry_id,
            fields.get("type"),
            fields.get("correlationid"),
            fields.get("causationid"),
            fields.get("source"),
            self.stream,
            self.group,
            self.consumer,
            None,
            received,
            0.0,
            attempt,
            "dead",
        )

    def _row(self, event: Event, received: float, attempt: int, outcome: Outcome) -> None:
        if self.metrics is not None:
            row = self._event_row(event, received, attempt, outcome)
            self.metrics.extend([row._replace(handled=time.time())])

    # -- committing -------------------------------------------------------------

    async def _commit_until_done(self, plan: _Plan) -> None:
        """Run the batch's Lua call; after a disconnect, run it again (it is idempotent)."""
        try:
            await self._commit_plan(plan)
        finally:
            self._held.difference_update(plan.ids)

    async def _commit_plan(self, plan: _Plan) -> None:
        if not plan.ids:
            return
        keys = [self.stream, self.seen, self.dlq, *plan.keys]
        window = int(self.options.dedupe_window * 1000) if self.options.dedupe else 0
        packed = _dumps(plan.flat)
        while True:
            args = [
                self.group,
                self.consumer,
                int(time.time() * 1000),
                window,
                self.options.dlq_maxlen or 0,
                packed,
                self.options.dedupe_max or 0,
            ]
            assert self._client is not None
            try:
                raw = await _COMMIT(self._client, keys, args)
            except redis.ResponseError as exc:
                if _is_oom(exc):
                    # the script is declared without allow-oom: refused whole, nothing
                    # applied; the batch stays pending and is committed once there is room
                    await self._on_out_of_memory(exc)
                    if self._stopping.is_set():
                        logger.warning("%s: stopping with a batch uncommitted (redelivered)", self)
                        return
                    continue
                if "NOGROUP" in str(exc):
                    # the group and its pending list are gone: nothing left to ack
                    await self._on_response_error(exc)
                    return
                raise
            except _CONNECTION_ERRORS as exc:
                await self._on_disconnect(exc)
                if self._stopping.is_set() and self._state == "reconnecting":
                    logger.warning("%s: stopping with a batch uncommitted (redelivered)", self)
                    return
                continue
            if self._state == "out-of-memory":
                logger.warning("%s: the broker accepts commits again", self)
                self._set_state("running")
            statuses = (
                ["ok"] * len(plan.rows)
                if raw == b"ok"  # the script's reply when every entry is ok
                else [status.decode("utf-8", "backslashreplace") for status in raw]
            )
            self._account(plan, statuses)
            return

    async def _on_out_of_memory(self, exc: redis.ResponseError) -> None:
        if self._state != "out-of-memory":
            logger.error(
                "%s: %s; the batch stays pending and is committed when memory is freed",
                self,
                _out_of_memory(exc, "commit a batch"),
            )
        self._set_state("out-of-memory", str(exc))
        await self._pause(_OOM_RETRY)

    def _account(self, plan: _Plan, statuses: Sequence[str]) -> None:
        counts = self._counts
        handled = time.time()
        rows: list[EventRow] = []
        outcome: Outcome
        for row, status in zip(plan.rows, statuses, strict=True):
            if status == "ok":
                counts["ok"] += 1
                outcome = "ok"
            elif status in {"duplicate", "stale"}:
                counts["duplicates"] += 1
                outcome = "duplicate"
            elif status == "retry":
                counts["retried"] += 1
                outcome = "retry"
            else:  # dead, or an effect that failed in Redis (dead-lettered by the script)
                counts["dead"] += 1
                outcome = "dead"
                if status.startswith("error:"):
                    logger.error("%s: effect of %s failed: %s", self, row.id, status[6:])
            rows.append(_new_row(EventRow, (*row[:10], handled, row[11], outcome)))
        if self.metrics is not None:
            self.metrics.extend(rows)


def _error_name(kind: type[BaseException]) -> str:
    """Short for built-in and envelope errors, qualified for the rest (says where it came from)."""
    if kind.__module__ in {"builtins", "eventlab.envelope"}:
        return kind.__name__
    return f"{kind.__module__}.{kind.__qualname__}"


def _entries(raw: Sequence[Sequence[Any]]) -> list[_Entry]:
    """Turn the RECLAIM script's ``{id, count, {k, v, …}}`` rows (bytes) into entries."""
    return [(_text(entry_id), _decode_fields(flat), int(count)) for entry_id, count, flat in raw]


def _wants_effects(handler: Handler) -> bool:
    try:
        params = list(inspect.signature(handler).parameters.values())
    except (TypeError, ValueError):
        return False
    positional = [
        p
        for p in params
        if p.kind in {p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD} and p.default is p.empty
    ]
    if len(positional) not in {1, 2}:
        raise ConsumerError(
            f"handler {getattr(handler, '__name__', handler)!r} takes {len(positional)} arguments",
            fix="write `async def handle(event)` or `async def handle(event, effects)`",
        )
    return len(positional) == _WITH_EFFECTS
