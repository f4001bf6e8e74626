"""Lesson 03's try-it cells, with reference answers (see lesson00.py for the format)."""

from eventlab import demos


# TRY IT 03-withdrawals: process
def process(client, stream, group, entry_id, event):
    """Apply one Deposited (+) or Withdrawn (-) event crash-safely; never go below zero.

    Keys: the stream, demos.balance_key(stream) (HINCRBY per subject), demos.seen_key(stream).
    """
    # BEGIN SOLUTION
    signed = event.data["amount"] if event.type == "Deposited" else -event.data["amount"]
    lua = """
    if redis.call('ZADD', KEYS[3], 'NX', 0, ARGV[3]) == 1 then
      local balance = tonumber(redis.call('HGET', KEYS[2], ARGV[4]) or '0')
      if balance + tonumber(ARGV[5]) >= 0 then
        redis.call('HINCRBY', KEYS[2], ARGV[4], ARGV[5])
      end
    end
    return redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
    """
    keys = [stream, demos.balance_key(stream), demos.seen_key(stream)]
    args = [group, entry_id, event.id, event.subject, signed]
    client.register_script(lua)(keys=keys, args=args)
    # END SOLUTION
