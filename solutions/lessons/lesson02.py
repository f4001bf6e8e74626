"""Lesson 02's try-it cells, with reference answers (see lesson00.py for the format)."""

from eventlab.envelope import Event


# TRY IT 02-ack-after-effect: handle_batch
def handle_batch(client, stream, group, consumer, apply):
    """Read up to 10 new entries as `consumer`; apply(event) each, XACK after; return the count."""
    # BEGIN SOLUTION
    reply = client.xreadgroup(group, consumer, {stream: ">"}, count=10)
    entries = reply[0][1] if reply else []
    for entry_id, fields in entries:
        apply(Event.from_fields(fields))  # if this raises, the entry stays pending
        client.xack(stream, group, entry_id)
    return len(entries)
    # END SOLUTION
