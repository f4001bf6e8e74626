"""Lesson 12's try-it cells, with reference answers (see lesson00.py for the format)."""


# TRY IT 12-one-each: one_each
def one_each():
    """Return a Lua script: take one unit for a customer who has none yet; 1 if taken, else 0.

    KEYS[1] the stock hash, KEYS[2] the set of customers served; ARGV[1] sku, ARGV[2] customer.
    """
    # BEGIN SOLUTION
    return """
    if redis.call('SISMEMBER', KEYS[2], ARGV[2]) == 1 then return 0 end
    local have = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
    if have < 1 then return 0 end
    redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
    redis.call('SADD', KEYS[2], ARGV[2])
    return 1
    """
    # END SOLUTION
