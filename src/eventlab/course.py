"""The course map as data, and the one setup call every lesson opens with.

``lesson = course.setup("03")`` finds or starts the broker, prints the versions
the lesson runs on, deletes the keys an earlier run of lesson 03 left (so the
notebook can be re-run from the top), checks the learner in when in a workshop
(and says where the progress went), and returns a :class:`Lesson` whose
:meth:`Lesson.key` names the lesson's streams. A lesson's last cell calls
:meth:`Lesson.done`, which records the lesson as *passed*.

:data:`LESSONS` is the one source of the course map's times, labs, what each
lesson does to the broker (:attr:`LessonInfo.needs`), talking points and
discussion prompts: ``notebooks/README.md`` and ``docs/instructor.md`` are
checked against it (and the guide's agendas generated from it, by
:func:`agenda` / ``scripts/instructor_guide.py``). Introduced in lesson 00.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

import redis

from eventlab import broker, streams, workshop
from eventlab._show import show

__all__ = [
    "AGENDAS",
    "GUIDE_SECTIONS",
    "LABS",
    "LESSONS",
    "PRIVATE_BROKER_NEEDS",
    "AgendaBlock",
    "LabInfo",
    "Lesson",
    "LessonInfo",
    "agenda",
    "agenda_markdown",
    "guide_section",
    "lesson_info",
    "private_broker_lessons",
    "setup",
    "versions",
]

_SHOWN = ("eventlab", "redis", "faststream", "pandas", "altair", "ipywidgets")


# -- the course map -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LabInfo:
    """One graded lab.

    Attributes:
        name: The folder under ``labs/`` (``03-idempotent-consumer``).
        after: The lesson id it follows.
        minutes: What a learner who just did the lesson needs, hints included.
    """

    name: str
    after: str
    minutes: int


@dataclass(frozen=True, slots=True)
class LessonInfo:
    """One lesson of the course map.

    Attributes:
        id: The two-digit id (``"03"``).
        notebook: The notebook's file name in ``notebooks/``.
        title: The title on the map.
        minutes: The time stated on the map and in the notebook's first cell.
        needs: What the lesson does beyond its own keys: ``kill-consumer`` (its
            own consumer processes), ``proxy`` (a fault proxy of its own),
            ``pause-broker`` (the dashboard's pause button), ``restart-broker``,
            ``kill-broker`` and ``flush-broker`` (scenarios on a private broker).
            The last four are refused on a ``REDIS_URL`` broker.
        talking_points: What to say before learners start, one line each.
        discussion: Questions for the room after the lesson, with no single answer.
        demo: What to show live, on the instructor's own managed broker.
    """

    id: str
    notebook: str
    title: str
    minutes: int
    needs: frozenset[str]
    talking_points: tuple[str, ...]
    discussion: tuple[str, ...]
    demo: str


PRIVATE_BROKER_NEEDS = frozenset({"pause-broker", "restart-broker", "kill-broker", "flush-broker"})
"""Needs that touch the server itself: refused on a ``REDIS_URL`` (shared) broker."""

_PLAIN: frozenset[str] = frozenset()

LESSONS: tuple[LessonInfo, ...] = (
    LessonInfo(
        "00",
        "00-setup-check.ipynb",
        "Setup check",
        10,
        _PLAIN,
        (
            "The broker is real: a Redis-compatible server the kit starts for you, not a mock.",
            "Your namespace is your name: every key you write starts with it.",
            "The setup cell's last line says whether the room sees your progress, and as whom.",
        ),
        (
            "What would you lose if the course ran on an in-memory fake instead of a server?",
            (
                "Your `eventlab doctor` shows a [WARN]: which ones would you fix before a demo "
                "to a customer, and which can wait?"
            ),
        ),
        "`eventlab doctor` line by line; `eventlab workshop status --watch` as the room joins",
    ),
    LessonInfo(
        "01",
        "01-events-not-state.ipynb",
        "Events, not state",
        25,
        _PLAIN,
        (
            "A command can be refused; an event is a fact in the past tense; state is a fold.",
            "One envelope for every event: id, type, source, subject, time, data.",
            "Emit the change, not the whole state: a snapshot stream hides what happened.",
        ),
        (
            (
                "Name an 'event' in a system you know that is really a command. What breaks when "
                "a consumer treats it as a fact?"
            ),
            (
                "Your billing team wants the customer's full address in every OrderPlaced: what "
                "do you gain, and who now owns that data?"
            ),
        ),
        "read the lesson's orders stream with redis-cli (command below): events are plain "
        "fields; XADD one by hand and the lesson's reader consumes it like any other",
    ),
    LessonInfo(
        "02",
        "02-consumers-and-groups.ipynb",
        "Consumers and groups",
        30,
        _PLAIN,
        (
            "XREAD fans out to every reader; a consumer group hands each entry to one member.",
            "Pending means delivered and not acknowledged: the group remembers for you.",
            "One group per service; scale a service by adding consumers to its group.",
        ),
        (
            "Two services need the same events at different speeds: one group or two, and why?",
            (
                "You need per-customer order but want four consumers: how do you partition, and "
                "what happens when you add a fifth?"
            ),
        ),
        "two groups on one stream, each at its own position; `eventlab status` while a "
        "consumer is stopped: pending and lag grow",
    ),
    LessonInfo(
        "03",
        "03-at-least-once-and-idempotency.ipynb",
        "At-least-once and idempotency",
        35,
        frozenset({"kill-consumer"}),
        (
            "Kill before ack means redelivery: at-least-once is the broker's promise, not a bug.",
            "Idempotency is the consumer's job: dedupe on the event id, atomic with the effect.",
            "Commands need idempotency keys too: a retried request must not charge twice.",
        ),
        (
            (
                "Your payment provider has no idempotency key. Where do you put the dedupe, and "
                "what does it cost when the dedupe store is lost?"
            ),
            "How long must a dedupe entry live? What decides it in your system?",
        ),
        "kill the naive consumer before its ack and watch the balance come out wrong by the "
        "redelivered events; the idempotent consumer gets it exactly right",
    ),
    LessonInfo(
        "04",
        "04-failures-retries-dead-letters.ipynb",
        "Failures, retries, dead letters",
        45,
        frozenset({"kill-consumer"}),
        (
            (
                "Transient errors get retries with backoff and jitter; permanent ones go to dead "
                "letters at once."
            ),
            "faststream's nack() does nothing on Redis: a failed entry stays pending for ever.",
            "A reclaimer takes over a crashed consumer's pending entries after min_idle.",
            (
                "In order, a poison event blocks everything behind it: give retries a budget "
                "below the latency SLA (retry_timeout, then dead letter)."
            ),
        ),
        (
            (
                "Who reads your dead-letter queue on a Monday morning, and what do they do with a "
                "poison event they cannot fix?"
            ),
            (
                "A downstream API is down for an hour: which retry schedule protects it, and "
                "which one takes it down again when it comes back?"
            ),
        ),
        "faststream's nack() leaving the entry pending; then retries with backoff, a poison "
        "event in the dead letters with its reason, and redrive",
    ),
    LessonInfo(
        "05",
        "05-backpressure-and-lag.ipynb",
        "Backpressure and lag",
        35,
        frozenset({"pause-broker"}),
        (
            "Lag (undelivered) and pending (unacknowledged) are two different numbers.",
            "MAXLEN ~ trims silently: a stopped consumer loses what it never read.",
            "Slow the producer (rate limit, lag-aware throttle) or scale the consumers.",
        ),
        (
            (
                "Your stream must stay under 1 GB: trim, throttle the producer, or refuse writes? "
                "Who notices each choice first?"
            ),
            "Which lag would you alert on, in events or in seconds, and at what threshold?",
        ),
        "the lag chart climbing behind a slow consumer, then falling after scaling out; what "
        "`MAXLEN ~` trimming silently loses",
    ),
    LessonInfo(
        "06",
        "06-eventual-consistency-in-an-order-flow.ipynb",
        "Eventual consistency in an order flow",
        35,
        frozenset({"kill-consumer"}),
        (
            "Accepted at once, confirmed later: the UI must say which one it shows.",
            "Optimistic views answer fast; authoritative views answer right.",
            "Measure the time to converge per order, not just the average.",
            "One writer per event type on a shared log; keys by owner prefix.",
            (
                "A state change and its event as two writes can be cut in two by a crash: "
                "write both at once (an outbox) and relay at least once to idempotent consumers."
            ),
        ),
        (
            (
                "Which screen of your product may show an order as confirmed before billing has "
                "answered, and which must not?"
            ),
            (
                "Convergence took 3 s for most orders and 40 s for a few: what would you look at "
                "first?"
            ),
        ),
        "an order shown Accepted at once and Confirmed later; the convergence time per order",
    ),
    LessonInfo(
        "07",
        "07-sagas-and-compensation.ipynb",
        "Sagas and compensation",
        30,
        _PLAIN,
        (
            "A saga undoes forward: compensations are new events, never a rollback.",
            "Choreography spreads the flow across services; orchestration names one owner.",
            "Every order must end in exactly one terminal state, even under duplicates.",
        ),
        (
            (
                "A refund fails after the stock was released: what is the order's state, and who "
                "finds out?"
            ),
            "Choreography or orchestration for your checkout flow? What would make you switch?",
        ),
        "a billing failure triggering compensation: stock released, payment refunded, one "
        "terminal state per order",
    ),
    LessonInfo(
        "08",
        "08-contracts-and-schema-evolution.ipynb",
        "Contracts and schema evolution",
        35,
        _PLAIN,
        (
            "The schema is the contract between teams; the registry checks it before it ships.",
            "BACKWARD: new readers read old events. FORWARD: old readers read new ones.",
            "Upcast old events on read instead of rewriting history.",
            (
                "Consumers declare the versions they accept; the deploy gate refuses a producer "
                "outside a live consumer's range."
            ),
        ),
        (
            (
                "Another team renamed a field in an event you consume. Which compatibility rule "
                "would have stopped it, and at which step of their pipeline?"
            ),
            "When is rewriting the stream better than upcasting every old event forever?",
        ),
        "a breaking schema change rejected by the compatibility check before it ships",
    ),
    LessonInfo(
        "09",
        "09-event-sourcing-and-projections.ipynb",
        "Event sourcing and projections",
        35,
        _PLAIN,
        (
            "The log is the truth; every read model is a fold you can throw away and rebuild.",
            "A new projection is backfilled from old history: no migration script.",
            "Snapshots make rebuilds fast; they never replace the log.",
            (
                "Commands decide from the fold and append with an expected version, checked and "
                "appended atomically: the loser of a race re-reads and decides again."
            ),
        ),
        (
            (
                "A projection disagrees with the log in production. Do you rebuild it, repair it, "
                "or find the bug first, and how long can the screen be wrong?"
            ),
            "Which data of your system would you refuse to event-source, and why?",
        ),
        "a projection rebuilt from history, compared equal to the live one",
    ),
    LessonInfo(
        "10",
        "10-observability.ipynb",
        "Observability",
        30,
        frozenset({"pause-broker"}),
        (
            "Correlation id: which story an event belongs to; causation id: which event caused it.",
            "Percentiles per hop, not averages: the tail is where users wait.",
            "Retry and dead-letter counts are the early warning; lag is the late one.",
        ),
        (
            (
                "One order took 9 s end to end. With the trace, whose hop do you look at first, "
                "and what would you need that the trace does not show?"
            ),
            (
                "Which three numbers of this dashboard would you put on the team's wall, and which "
                "alert pages someone at night?"
            ),
        ),
        "the live dashboard while you press its fault buttons (on your own managed broker); "
        "one order's trace as a waterfall",
    ),
    LessonInfo(
        "11",
        "11-chaos-and-reconciliation.ipynb",
        "Chaos and reconciliation",
        35,
        frozenset({"kill-consumer", "proxy", "restart-broker", "kill-broker", "flush-broker"}),
        (
            "Seed the faults: the same seed replays the same failure, so a fix can be proven.",
            "Judge the recorded history, not the logs: the checker says lost, doubled or valid.",
            "Acknowledged is not durable: what survives a kill depends on the persistence mode.",
        ),
        (
            (
                "Your broker runs with appendfsync everysec. What exactly do you promise a "
                "customer whose order was acknowledged one second before a power cut?"
            ),
            (
                "The reconciliation job repaired 12 orders last night. Is that a success or an "
                "incident, and who gets told?"
            ),
        ),
        "the seeded fault schedule, the checker's verdict before and after healing",
    ),
    LessonInfo(
        "12",
        "12-release-trains-and-trade-offs.ipynb",
        "Release trains and trade-offs",
        35,
        _PLAIN,
        (
            "Dark launch: run the new consumer in its own group and compare before switching.",
            "Roll back by compensation: events already published stay published.",
            "Some steps need a stronger guarantee (a reservation); most do not.",
        ),
        (
            (
                "Which step of your product truly needs strong consistency, and what would it cost "
                "to make only that step strong?"
            ),
            (
                "Your dark-launched consumer disagrees with the live one on 0.1% of orders: ship, "
                "wait, or roll back?"
            ),
        ),
        "a dark-launched consumer group compared with the live one",
    ),
)
"""Every lesson in order: the one source of the course map's data."""

LABS: tuple[LabInfo, ...] = (
    LabInfo("03-idempotent-consumer", "03", 35),
    LabInfo("04a-retries-dead-letters", "04", 30),
    LabInfo("04b-crash-recovery", "04", 30),
    LabInfo("05-backpressure", "05", 35),
    LabInfo("06-outbox", "06", 30),
    LabInfo("07-saga-compensation", "07", 40),
    LabInfo("08-schema-evolution", "08", 30),
    LabInfo("09-projection-rebuild", "09", 35),
    LabInfo("10-observability", "10", 35),
    LabInfo("11-reconciliation", "11", 40),
)
"""Every graded lab, with the lesson it follows and its time."""


def lesson_info(lesson_id: str) -> LessonInfo:
    """Return the :class:`LessonInfo` of lesson ``lesson_id`` (``"03"``).

    Raises:
        KeyError: No lesson has that id.
    """
    for info in LESSONS:
        if info.id == lesson_id:
            return info
    raise KeyError(lesson_id)


def private_broker_lessons() -> tuple[LessonInfo, ...]:
    """Lessons that touch the server itself: on a shared ``REDIS_URL`` broker those steps refuse."""
    return tuple(info for info in LESSONS if info.needs & PRIVATE_BROKER_NEEDS)


# -- agendas --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgendaBlock:
    """One row of an agenda.

    Attributes:
        start: Minutes from the start of the day.
        label: What happens (markdown).
        minutes: How long.
        lesson: The lesson id, when the block is a lesson.
    """

    start: int
    label: str
    minutes: int
    lesson: str | None = None


_Plan = tuple[str, ...]

AGENDAS: dict[str, tuple[_Plan, ...]] = {
    "3 hours": (
        (
            "welcome:10",
            "L00",
            "L01",
            "L02",
            "break:10",
            "L03",
            "lab:03-idempotent-consumer",
            "wrap:10",
        ),
    ),
    "one day": (
        (
            "welcome:10",
            "L00",
            "L01",
            "L02",
            "break:15",
            "L03",
            "lab:03-idempotent-consumer",
            "lunch:45",
            "L04",
            "lab:04a-retries-dead-letters",
            "break:15",
            "L05",
            "L06",
            "break:10",
            "L07",
            "wrap:15",
        ),
    ),
    "two days": (
        (
            "welcome:10",
            "L00",
            "L01",
            "L02",
            "break:15",
            "L03",
            "lab:03-idempotent-consumer",
            "lunch:50",
            "L04",
            "lab:04a-retries-dead-letters",
            "lab:04b-crash-recovery",
            "break:15",
            "L05",
            "lab:05-backpressure",
            "L06",
            "lab:06-outbox",
            "wrap:15",
        ),
        (
            "recap:10",
            "L07",
            "break:15",
            "lab:07-saga-compensation",
            "L08",
            "lunch:50",
            "lab:08-schema-evolution",
            "L09",
            "lab:09-projection-rebuild",
            "break:15",
            "L10",
            "lab:10-observability",
            "L11",
            "lab:11-reconciliation",
            "L12",
            "wrap:10",
        ),
    ),
}
"""Agenda plans: lessons (``L03``) and labs take their minutes from the course map."""

_FIXED = {
    "welcome": "Welcome; everyone joins (`eventlab workshop join NAME --room URL`) while you "
    "watch `eventlab workshop status --watch`",
    "break": "Break",
    "lunch": "Lunch",
    "recap": "Recap with `eventlab workshop status`: who is stuck where",
    "wrap": "Wrap-up: the room's status on the projector, questions, what to do next",
}


def agenda(length: str) -> list[list[AgendaBlock]]:
    """Return the agenda ``length`` (a key of :data:`AGENDAS`): one list of blocks per day.

    Raises:
        KeyError: No agenda of that length.
    """
    labs = {lab.name: lab for lab in LABS}
    days = []
    for plan in AGENDAS[length]:
        blocks: list[AgendaBlock] = []
        clock = 0
        for item in plan:
            if item.startswith("L"):
                info = lesson_info(item[1:])
                block = AgendaBlock(
                    clock, f"Lesson **{info.id} {info.title}**", info.minutes, info.id
                )
            elif item.startswith("lab:"):
                lab = labs[item[4:]]
                label = f"Lab **{lab.name}** (`eventlab grade labs/{lab.name}`)"
                block = AgendaBlock(clock, label, lab.minutes)
            else:
                kind, minutes = item.split(":")
                block = AgendaBlock(clock, _FIXED[kind], int(minutes))
            blocks.append(block)
            clock += block.minutes
        days.append(blocks)
    return days


def _clock(minutes: int, *, day_start: int) -> str:
    total = day_start + minutes
    return f"{total // 60:02d}:{total % 60:02d}"


def _duration(minutes: int) -> str:
    hours, rest = divmod(minutes, 60)
    return f"{hours} h {rest:02d}" if hours else f"{rest} min"


def agenda_markdown(length: str, *, day_start: int = 9 * 60) -> str:
    """Render agenda ``length`` as markdown tables (times from ``day_start``, minutes)."""
    days = agenda(length)
    out: list[str] = []
    for number, blocks in enumerate(days, start=1):
        total = sum(b.minutes for b in blocks)
        if len(days) > 1:
            out.append(f"#### Day {number} ({_duration(total)})\n")
        else:
            out.append(f"Total: {_duration(total)}.\n")
        out.append("| time | block | minutes |\n|---|---|---|")
        out.extend(
            f"| {_clock(b.start, day_start=day_start)} | {b.label} | {b.minutes} |" for b in blocks
        )
        out.append(f"| {_clock(total, day_start=day_start)} | End | |\n")
    return "\n".join(out)


_NEEDS_TEXT = {
    "pause-broker": "the dashboard's *Pause broker* button",
    "restart-broker": "restarts a broker",
    "kill-broker": "kills a broker",
    "flush-broker": "flushes a broker",
}

GUIDE_SECTIONS = ("setup-b", "agendas", "lessons")
"""Parts of ``docs/instructor.md`` generated from :data:`LESSONS` (:func:`guide_section`)."""


def _setup_b() -> str:
    rows = [
        "| lesson | on a shared `REDIS_URL` broker, this part refuses | what to do |",
        "|---|---|---|",
    ]
    for info in private_broker_lessons():
        parts = ", ".join(_NEEDS_TEXT[n] for n in sorted(info.needs & PRIVATE_BROKER_NEEDS))
        rows.append(
            f"| {info.id} {info.title} | {parts} | run it with `REDIS_URL` unset, "
            "or watch that part on the projector |"
        )
    safe = [i.id for i in LESSONS if not i.needs & PRIVATE_BROKER_NEEDS]
    killers = [i.id for i in LESSONS if "kill-consumer" in i.needs and i.id in safe]
    rows.append("")
    rows.append(
        f"Every other lesson ({', '.join(safe)}) touches only the learner's own keys and "
        f"processes ({', '.join(killers[:-1])} and {killers[-1]} kill processes the lesson "
        "itself started)."
    )
    return "\n".join(rows)


def _lessons() -> str:
    out = []
    for info in LESSONS:
        out.append(f"#### {info.id} {info.title} ({info.minutes} min)\n")
        out.append("Talking points:\n")
        out.extend(f"- {point}" for point in info.talking_points)
        out.append("\nDiscussion:\n")
        out.extend(f"- {prompt}" for prompt in info.discussion)
        out.append(f"\nShow live: {info.demo}.\n")
    return "\n".join(out).rstrip("\n")


def guide_section(name: str) -> str:
    """Return the generated markdown of section ``name`` (one of :data:`GUIDE_SECTIONS`)."""
    if name == "setup-b":
        return _setup_b()
    if name == "agendas":
        titles = {"3 hours": "Three hours", "one day": "One day", "two days": "Two days"}
        return "\n".join(
            f"### {titles[length]}\n\n{agenda_markdown(length)}" for length in AGENDAS
        ).rstrip("\n")
    if name == "lessons":
        return _lessons()
    raise KeyError(name)


# -- the lesson setup -----------------------------------------------------------------


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
        """Return the namespaced key of this lesson's stream ``name``: ``{lab:l03-orders}``."""
        return streams.stream_key(self.prefix + name)

    def reset(self) -> int:
        """Delete every key this lesson created; return how many were deleted."""
        pattern = f"{{{streams.namespace()}:{self.prefix}*"
        doomed = list(self.client.scan_iter(match=pattern, count=1000))
        return int(self.client.delete(*doomed)) if doomed else 0

    def done(self, *, quiet: bool = False) -> workshop.Checkin | None:
        """Record this lesson as passed (its last cell ran) and say where that went.

        Outside a workshop nothing is recorded and only ``lesson NN done`` is printed.
        """
        result = workshop.checkin(self.client, lesson=self.id, passed=True)
        if not quiet:
            show(f"lesson {self.id} done", *([result.line()] if result is not None else []))
        return result


def setup(lesson: str, *, quiet: bool = False) -> Lesson:
    """Connect to the broker, print versions, reset the lesson's keys; return a :class:`Lesson`.

    In a workshop the lesson is recorded as started, and the last printed line
    says whether the progress reached the room broker and under which name.

    Args:
        lesson: The two-digit lesson id (``"03"``).
        quiet: Print nothing (for tests).
    """
    workshop.check_learner_url()  # a shared room broker must have a password
    handle = broker.up()
    result = Lesson(id=lesson, broker=handle, client=handle.client())
    removed = result.reset()
    arrived = workshop.checkin(result.client, lesson=lesson)  # no-op outside a workshop
    if not quiet:
        shown = " · ".join(f"{name} {ver}" for name, ver in versions().items())
        kind = "managed" if handle.managed else "REDIS_URL"
        show(
            shown,
            f"broker {broker.redact(handle.url)} · server {handle.version} ({kind})",
            f"lesson {lesson}: namespace {streams.namespace()!r}, {removed} old key(s) reset",
            *([arrived.line()] if arrived is not None else []),
        )
    return result
