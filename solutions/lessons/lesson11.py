"""Lesson 11's try-it cells, with reference answers (see lesson00.py for the format)."""

from eventlab import faults


# TRY IT 11-schedule: my_plan
def my_plan():
    """Seed 11: latency, then a partition, then latency again; each window 0.2-0.4 s."""
    # BEGIN SOLUTION
    return faults.schedule(
        seed=11,
        faults=["latency", "partition"],
        cycles=3,
        fault_seconds=(0.2, 0.4),
        in_order=True,
    )
    # END SOLUTION
