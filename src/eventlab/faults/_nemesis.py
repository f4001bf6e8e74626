"""Nemesis schedules: seeded sequences of faults, run and recorded in a history.

Part of :mod:`eventlab.faults`; import from there.

Introduced in lesson 11.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from eventlab.faults._common import Applied, FaultError
from eventlab.history import History

# -- nemesis schedules ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Phase:
    """One phase of a nemesis schedule.

    Attributes:
        name: ``warm-up``, ``fault``, ``heal``, ``quiesce`` or ``final-reads``.
        start: Seconds after the run starts.
        end: Seconds after the run starts.
        fault: For ``fault`` phases, the fault's name; else ``None``.
    """

    name: str
    start: float
    end: float
    fault: str | None = None


@dataclass(frozen=True, slots=True)
class Step:
    """One nemesis action: start or stop ``fault`` at ``at`` seconds.

    Attributes:
        at: Seconds after the run starts.
        fault: The fault's name (a key of the actions mapping).
        phase: ``"start"`` or ``"stop"``.
    """

    at: float
    fault: str
    phase: Literal["start", "stop"]


@dataclass(frozen=True, slots=True)
class Schedule:
    """A seeded nemesis schedule: the same seed gives the same faults at the same offsets.

    Attributes:
        seed: The seed it was built from.
        phases: Warm-up, fault cycles, heal, quiesce, final reads, in order.
        steps: The start/stop actions, sorted by time.
        duration: Seconds from start to the end of quiesce (final reads follow).
    """

    seed: int
    phases: tuple[Phase, ...]
    steps: tuple[Step, ...]
    duration: float


def schedule(
    *,
    seed: int,
    faults: Sequence[str],
    cycles: int = 2,
    warmup: float = 0.3,
    fault_seconds: tuple[float, float] = (0.2, 0.5),
    gap_seconds: tuple[float, float] = (0.1, 0.3),
    quiesce: float = 0.3,
    in_order: bool = False,
) -> Schedule:
    """Build a seeded schedule: warm-up, ``cycles`` fault windows, heal, quiesce, final reads.

    Args:
        seed: Same seed, same schedule.
        faults: Fault names to draw from (each cycle picks one, seeded; with
            ``in_order=True`` cycle ``i`` uses ``faults[i % len(faults)]``).
        cycles: How many fault windows.
        warmup: Seconds of normal operation first.
        fault_seconds: (min, max) length of a fault window, seconds.
        gap_seconds: (min, max) pause between windows, seconds.
        quiesce: Seconds after heal for the system to catch up before final reads.
        in_order: Take the faults in the given order instead of drawing them.
    """
    if not faults:
        raise FaultError("a schedule needs at least one fault", fix="pass faults=['partition']")
    rng = random.Random(seed)  # noqa: S311 - seeded faults, not cryptography
    phases = [Phase("warm-up", 0.0, warmup)]
    steps: list[Step] = []
    at = warmup
    for cycle in range(cycles):
        fault = faults[cycle % len(faults)] if in_order else rng.choice(list(faults))
        length = round(rng.uniform(*fault_seconds), 3)
        phases.append(Phase("fault", at, at + length, fault))
        steps.extend([Step(at, fault, "start"), Step(at + length, fault, "stop")])
        at += length
        gap = round(rng.uniform(*gap_seconds), 3)
        at += gap
    phases.append(Phase("heal", at, at))
    phases.append(Phase("quiesce", at, at + quiesce))
    phases.append(Phase("final-reads", at + quiesce, at + quiesce))
    return Schedule(seed, tuple(phases), tuple(steps), at + quiesce)


Action = Callable[[], "Applied | Callable[[], object] | None"]
"""Starts a fault; returns an :class:`Applied` (or an undo callable, or ``None``)."""


class Nemesis:
    """Runs a :class:`Schedule` in a background thread, recording each fault in a history.

    Args:
        plan: The schedule.
        actions: Fault name → a callable that starts it and returns how to stop it.
        history: Where the nemesis records ``start``/``stop``.
    """

    def __init__(self, plan: Schedule, actions: Mapping[str, Action], *, history: History) -> None:
        """Prepare (not start) the run; see the class docstring."""
        missing = {s.fault for s in plan.steps} - set(actions)
        if missing:
            raise FaultError(
                f"no action for fault(s) {sorted(missing)}", fix="add them to the actions mapping"
            )
        self.plan = plan
        self.actions = dict(actions)
        self.history = history
        self.errors: list[BaseException] = []
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.started_at: float | None = None

    def start(self) -> Nemesis:
        """Run the schedule in a background thread; return at once."""
        self._thread = threading.Thread(target=self.run, name="eventlab-nemesis", daemon=True)
        self._thread.start()
        return self

    def join(self, timeout: float | None = None) -> None:
        """Wait for the schedule to finish (re-raises the first fault error)."""
        if self._thread is not None:
            self._thread.join(timeout)
        if self.errors:
            raise self.errors[0]

    def cancel(self) -> None:
        """Stop early; faults that are on are turned off."""
        self._stop.set()

    def run(self) -> None:
        """Run the schedule in this thread (blocks for :attr:`Schedule.duration` seconds)."""
        self.started_at = time.monotonic()
        on: dict[str, Callable[[], object]] = {}
        try:
            for step in self.plan.steps:
                wait = self.started_at + step.at - time.monotonic()
                if wait > 0 and self._stop.wait(wait):
                    break
                if step.phase == "start":
                    self.history.nemesis(step.fault, "start")
                    handle = self.actions[step.fault]()
                    on[step.fault] = _undo_of(handle)
                else:
                    on.pop(step.fault, lambda: None)()
                    self.history.nemesis(step.fault, "stop")
        except BaseException as exc:  # noqa: BLE001 - surfaced by join()
            self.errors.append(exc)
        finally:
            for fault, undo in on.items():
                with contextlib.suppress(Exception):
                    undo()
                self.history.nemesis(fault, "stop")
        rest = self.started_at + self.plan.duration - time.monotonic()
        if rest > 0 and not self.errors:
            self._stop.wait(rest)


def _undo_of(handle: object) -> Callable[[], object]:
    if isinstance(handle, Applied):
        return handle.undo
    if callable(handle):
        return handle
    return lambda: None
