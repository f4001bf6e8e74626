"""Lesson 05's try-it cells, with reference answers (see lesson00.py for the format)."""


# TRY IT 05-lag-bound: how_many
def how_many(lag, wanted):
    """Return how many of the `wanted` events to send now, given the group's `lag`."""
    # BEGIN SOLUTION
    return max(0, min(wanted, 30 - lag))
    # END SOLUTION
