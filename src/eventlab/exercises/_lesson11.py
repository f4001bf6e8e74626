"""Lesson 11's try-it check: write the seeded fault schedule the lesson then runs.

The learner's ``my_plan()`` returns a :class:`eventlab.faults.Schedule`: seed 11,
latency, then a partition, then latency again, each window 0.2-0.4 s. The check
judges the schedule's phases and that a :class:`~eventlab.faults.Nemesis` with
the lesson's two actions accepts it; the lesson's next cells run it against the
shop through the fault proxy.
"""

from __future__ import annotations

from typing import Any

from eventlab import faults
from eventlab.course import Lesson
from eventlab.exercises import exercise
from eventlab.history import History

WANT = ["latency", "partition", "latency"]
SHORTEST, LONGEST = 0.2, 0.4


@exercise(
    "11-schedule",
    title="a seeded schedule: latency, partition, latency, 0.2-0.4 s each",
    hints=(
        (
            "faults.schedule takes seed, faults, cycles, fault_seconds and in_order: three "
            "windows are three cycles, and the windows' lengths are fault_seconds=(min, max)"
        ),
        "in_order=True takes the faults in the order given, cycling: latency, partition, latency",
    ),
)
def schedule(answer: Any, lesson: Lesson) -> str | None:  # noqa: ARG001 - judged without the broker
    """Judge the schedule ``answer()`` returns."""
    plan = answer()  # a blank raises here
    if not isinstance(plan, faults.Schedule):
        return f"my_plan() returned {type(plan).__name__}: return faults.schedule(...)"
    if plan.seed != 11:  # noqa: PLR2004 - the seed the exercise asks for
        return f"the seed is {plan.seed}: use seed=11, so the lesson's run repeats"
    windows = [p for p in plan.phases if p.name == "fault"]
    got = [p.fault for p in windows]
    if got != WANT:
        return f"the fault windows are {got}, expected {WANT}: three cycles, in_order=True"
    for phase in windows:
        length = round(phase.end - phase.start, 3)
        if not SHORTEST <= length <= LONGEST:
            return f"a {phase.fault} window lasts {length} s: use fault_seconds=(0.2, 0.4)"
    noop: faults.Action = lambda: None  # noqa: E731 - the nemesis only needs to accept the plan
    faults.Nemesis(plan, {"latency": noop, "partition": noop}, history=History())
    return None
