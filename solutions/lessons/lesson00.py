"""Lesson 00's try-it cells, with reference answers (the notebook gets them blanked).

Each "TRY IT <id>: <name>" header comment starts one notebook cell, which runs to
the next header; scripts/tryit.py writes the cells into the lesson with every
solution block replaced by `raise NotImplementedError`. The imports here are what
the lesson's own cells provide. The checks live in eventlab/exercises/_lesson00.py.
"""

from eventlab import streams
from eventlab.envelope import Event


# TRY IT 00-first-event: say_hello
def say_hello(client, stream):
    """Publish one HelloSaid event with your name in its data; return its entry id."""
    # BEGIN SOLUTION
    event = Event(type="HelloSaid", source="setup-check", data={"name": "Ada"})
    return streams.publish(client, stream, event)
    # END SOLUTION
