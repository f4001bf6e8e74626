"""Lua scripts of the consumer runtime: one atomic call per batch.

Every script declares every key it touches in ``KEYS`` and the runtime derives
them from the stream key (``{lab:orders}`` → ``{lab:orders}:dlq``,
``{lab:orders}:seen:billing``), so they share the ``{lab:orders}`` hash slot and the
scripts also run on Redis Cluster.

Each script starts with a Redis 7 shebang (``#!lua flags=…``). Without one, the
server checks ``maxmemory`` only at a script's first write command that can
grow memory, and the commit script writes ``XACK`` first: at the memory limit
its effects went through while producers were refused. Declared without
``allow-oom``, the whole script is refused up front (``-OOM``) and nothing of
it runs. The reclaim script only claims and acknowledges (no command that
grows memory), so it keeps ``allow-oom``: consumers can still hand work back
and reclaim it when the broker is full.
"""

from __future__ import annotations

__all__ = ["COMMIT", "DLQ_FIELDS", "RECLAIM", "REDRIVE"]

DLQ_FIELDS = (
    "dlqreason",
    "dlqerror",
    "dlqattempts",
    "dlqid",
    "dlqstream",
    "dlqgroup",
    "dlqconsumer",
    "dlqtime",
)
"""Fields a dead letter adds to the original ones (valid CloudEvents extension names)."""

# KEYS: 1 stream, 2 seen (zset: event id -> ms), 3 dead letters, 4.. effect keys.
# ARGV: group, consumer, now_ms, window_ms (0: no dedupe), dlq_maxlen (0: none),
#   plan: one flat JSON list, per entry `entry_id, event_id, kind, n` and then its n
#   items (one string: packing thousands of separate arguments costs the client more
#   than the whole script costs the server; flat, because cjson builds a Lua table per
#   JSON list and four nested lists per entry cost the server more than the rest of
#   decoding the plan, docs/runtime.md#speed)
#   kind "ok":    items = its ops one after another, each `opname, key index, m` and m args
#   kind "dead":  items = reason, error type, attempts
#   kind "retry": items = idle_ms (the XCLAIM IDLE that makes it reclaimable after a backoff)
#   seen_max (ARGV[7], 0: none): the dedupe store keeps at most this many ids; the
#   oldest are dropped first (an event redelivered after that is applied again)
# Returns one status per entry: ok | duplicate | stale | dead | retry | error:<msg>;
# just 'ok' when every entry is ok.
# XACK comes first and fences the effect: 0 means another consumer already
# finished the entry, so its effect must not be applied twice.
COMMIT = r"""#!lua
local stream, seen, dlq = KEYS[1], KEYS[2], KEYS[3]
local group, consumer = ARGV[1], ARGV[2]
local now, window, dlqmax = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local nowarg = ARGV[3]  -- the ZADD score as sent: no number-to-text per mark
local plan = cjson.decode(ARGV[6])
local call, try = redis.call, redis.pcall
local want = {hincrby='hash', hset='hash', guard='hash', incrby='string', xadd='stream',
              sadd='set', set=false, del=false}
-- the type each op leaves its key with (later ops of the same entry see that type)
local leaves = {hincrby='hash', hset='hash', guard='hash', incrby='string', xadd='stream',
                sadd='set', set='string', del='none'}
-- 2^63 as a double; a sum this close to it may overflow a 64-bit integer: refuse it
local LIMIT = 9.2e18

local function deadletter(eid, reason, err, attempts)
  local rows = call('XRANGE', stream, eid, eid)
  local args = {dlq}
  if dlqmax > 0 then
    args[#args+1] = 'MAXLEN'; args[#args+1] = '~'; args[#args+1] = dlqmax
  end
  args[#args+1] = '*'
  if rows[1] then
    for _, v in ipairs(rows[1][2]) do args[#args+1] = v end
  end
  local extra = {reason, err, attempts, eid, stream, group, consumer, tostring(now)}
  local names = {'dlqreason', 'dlqerror', 'dlqattempts', 'dlqid', 'dlqstream', 'dlqgroup',
                 'dlqconsumer', 'dlqtime'}
  for j = 1, #names do args[#args+1] = names[j]; args[#args+1] = extra[j] end
  call('XADD', unpack(args))
end

-- what Redis accepts as an integer (string2ll): no sign but '-', no leading zero, no space
local function integer(v)
  if v == '0' then return 0 end
  if #v > 20 or not string.match(v, '^%-?[1-9]%d*$') then return nil end
  return tonumber(v)
end

-- Dry run of an entry's ops (plan[first..last]) against the data and against what
-- its earlier ops would leave, so an entry that would fail midway applies nothing:
-- every error these writes can raise (wrong type, not an integer, overflow) is found here.
local function check(first, last)
  -- key -> type; key or key\0field -> integer value (false: not an integer); key -> deleted
  local types, ints, gone = {}, {}, {}
  local j = first
  while j <= last do
    local op, key, k = plan[j], KEYS[plan[j + 1]], plan[j + 2]
    local a1, an = plan[j + 3], plan[j + 2 + k]
    local need = want[op]
    if need == nil then return 'unknown effect ' .. tostring(op) end
    local t = types[key]
    if t == nil then t = call('TYPE', key)['ok'] end
    if need and t ~= 'none' and t ~= need then
      return 'WRONGTYPE ' .. key .. ' is a ' .. t .. ', ' .. op .. ' needs a ' .. need
    end
    if op == 'incrby' or op == 'hincrby' then
      local slot, cur = key, nil
      if op == 'hincrby' then slot = key .. '\0' .. a1 end
      cur = ints[slot]
      if cur == false then
        return 'ERR an earlier effect leaves ' .. key .. ' not an integer: '
          .. op .. ' cannot add to it'
      end
      if cur == nil and t ~= 'none' and not gone[key] then
        local raw
        if op == 'hincrby' then raw = call('HGET', key, a1)
        else raw = call('GET', key) end
        if raw then
          cur = integer(raw)
          if cur == nil then
            local where = key
            if op == 'hincrby' then where = key .. ' field ' .. a1 end
            return 'ERR ' .. where .. ' holds ' .. string.format('%q', string.sub(raw, 1, 40))
              .. ', not an integer: ' .. op .. ' cannot add to it'
          end
        end
      end
      local sum = (cur or 0) + tonumber(an)
      if sum >= LIMIT or sum <= -LIMIT then
        return 'ERR ' .. op .. ' on ' .. key .. ' would overflow a 64-bit integer'
      end
      ints[slot] = sum
    elseif op == 'hset' then
      for m = j + 3, j + 2 + k, 2 do
        ints[key .. '\0' .. plan[m]] = integer(plan[m + 1]) or false
      end
    elseif op == 'set' then
      ints[key] = integer(a1) or false
    elseif op == 'del' then
      gone[key] = true
      for s in pairs(ints) do
        if s == key or string.sub(s, 1, #key + 1) == key .. '\0' then ints[s] = 0 end
      end
    end
    types[key] = leaves[op]
    j = j + 3 + k
  end
  return nil
end

-- an entry's ops, plan[first..last]: `opname, key index, m, m args` each
local function apply(first, last)
  local j = first
  while j <= last do
    local op, key, k = plan[j], KEYS[plan[j + 1]], plan[j + 2]
    local a, z = j + 3, j + 2 + k
    local r
    if op == 'hincrby' then r = try('HINCRBY', key, plan[a], plan[a + 1])
    elseif op == 'guard' then
      local cur = tonumber(call('HGET', key, plan[a]) or '-1')
      if cur and cur >= tonumber(plan[a + 1]) then return 'duplicate' end
      r = try('HSET', key, plan[a], plan[a + 1])
    elseif op == 'incrby' then r = try('INCRBY', key, plan[a])
    elseif op == 'hset' then r = try('HSET', key, unpack(plan, a, z))
    elseif op == 'sadd' then r = try('SADD', key, unpack(plan, a, z))
    elseif op == 'del' then r = try('DEL', key)
    elseif op == 'set' then
      if plan[a + 1] ~= '0' then r = try('SET', key, plan[a], 'PX', plan[a + 1])
      else r = try('SET', key, plan[a]) end
    elseif op == 'xadd' then
      if plan[a] ~= '0' then
        r = try('XADD', key, 'MAXLEN', '~', plan[a], '*', unpack(plan, a + 1, z))
      else
        r = try('XADD', key, '*', unpack(plan, a + 1, z))
      end
    end
    if type(r) == 'table' and r['err'] then return 'error:' .. r['err'] end
    j = z + 1
  end
  return 'ok'
end

-- where each entry starts: entry id, event id, kind, n, then its n items
local starts, size = {}, #plan
local i = 1
while i <= size do starts[#starts + 1] = i; i = i + 4 + plan[i + 3] end

-- the dedupe store, asked once for every event id of the batch (ZMSCORE), marked once at
-- the end (ZADD); `known` also gets this batch's marks, so an id twice in one batch is a
-- duplicate
local known, marks = {}, {}
if window > 0 then
  call('ZREMRANGEBYSCORE', seen, '-inf', now - window)
  local ids = {}
  for _, s in ipairs(starts) do
    if plan[s + 1] ~= '' then ids[#ids + 1] = plan[s + 1] end
  end
  for b = 1, #ids, 1000 do
    local scores = call('ZMSCORE', seen, unpack(ids, b, math.min(b + 999, #ids)))
    for j = 1, #scores do
      if scores[j] then known[ids[b + j - 1]] = true end
    end
  end
end
local out, allok = {}, true
for e, s in ipairs(starts) do
  local eid, evid, kind, n = plan[s], plan[s + 1], plan[s + 2], plan[s + 3]
  local status
  if kind == 'retry' then
    call('XCLAIM', stream, group, consumer, 0, eid, 'IDLE', plan[s + 4], 'JUSTID')
    status = 'retry'
  elseif call('XACK', stream, group, eid) == 0 then
    status = 'stale'
  elseif kind == 'dead' then
    deadletter(eid, plan[s + 4], plan[s + 5], plan[s + 6])
    status = 'dead'
  elseif window > 0 and evid ~= '' and known[evid] then
    status = 'duplicate'
  else
    local first, last = s + 4, s + 3 + n
    -- a single effect that fails changes nothing; only several need the type check first
    local bad = nil
    if n > 0 and first + 3 + plan[first + 2] <= last then bad = check(first, last) end
    if bad then status = 'error:' .. bad else status = apply(first, last) end
    if status ~= 'ok' and string.sub(status, 1, 6) == 'error:' then
      deadletter(eid, 'effect failed: ' .. string.sub(status, 7), 'EffectError', '1')
    elseif window > 0 and evid ~= '' then
      known[evid] = true
      marks[#marks + 1] = nowarg
      marks[#marks + 1] = evid
    end
  end
  if status ~= 'ok' then allok = false end
  out[e] = status
end
for b = 1, #marks, 1000 do
  call('ZADD', seen, unpack(marks, b, math.min(b + 999, #marks)))
end
local cap = tonumber(ARGV[7] or '0')
if window > 0 and cap > 0 then
  local c = call('ZCARD', seen)
  if c > cap then call('ZREMRANGEBYRANK', seen, 0, c - cap - 1) end
end
if allok then return 'ok' end  -- every entry ok (the usual batch): one reply, not one per entry
return out
"""

# KEYS: 1 stream. ARGV: group, consumer, min_idle_ms, start, count, mode ("auto" | "own"),
#   held (JSON list of entry ids this consumer is still handling).
# "auto" does what XAUTOCLAIM does (claim entries of any consumer idle >= min_idle; the
# server counts the delivery) as XPENDING IDLE + XCLAIM, so it can skip the entries this
# consumer still holds: claiming those would reset their idle time and hide a slow
# handler from the other consumers. "own" re-claims this consumer's own pending entries
# at start (a restarted consumer with the same name).
# Returns {next start ("0-0" after a full pass), {{entry id, delivery count, fields}...},
# {ids of pending entries trimmed from the stream}}.
RECLAIM = r"""#!lua flags=allow-oom
local stream, group, consumer = KEYS[1], ARGV[1], ARGV[2]
local out, deleted = {}, {}
local p, nextstart
if ARGV[6] == 'own' then
  p = redis.call('XPENDING', stream, group, '-', '+', ARGV[5], consumer)
  nextstart = '0-0'
else
  p = redis.call('XPENDING', stream, group, 'IDLE', ARGV[3], ARGV[4], '+', ARGV[5])
  nextstart = '0-0'
  if #p >= tonumber(ARGV[5]) then nextstart = '(' .. p[#p][1] end
end
local held = {}
if ARGV[7] then
  for _, id in ipairs(cjson.decode(ARGV[7])) do held[id] = true end
end
local ids, counts = {}, {}
for _, row in ipairs(p) do
  if not held[row[1]] then ids[#ids+1] = row[1]; counts[row[1]] = row[4] end
end
if #ids == 0 then return {nextstart, out, deleted} end
local minidle = ARGV[3]
if ARGV[6] == 'own' then minidle = 0 end
local got = {}
for _, e in ipairs(redis.call('XCLAIM', stream, group, consumer, minidle, unpack(ids))) do
  if e and e[2] then
    got[e[1]] = true
    out[#out+1] = {e[1], counts[e[1]] + 1, e[2]}
  end
end
for _, id in ipairs(ids) do
  -- inside one script nothing else ran, so an id not claimed was trimmed away
  if not got[id] and #redis.call('XRANGE', stream, id, id) == 0 then
    deleted[#deleted+1] = id
    redis.call('XACK', stream, group, id)
  end
end
return {nextstart, out, deleted}
"""

# KEYS: 1 dead-letter stream, 2 stream. ARGV: dead-letter entry ids.
# Each dead letter still present is appended to the stream without its dlq*
# fields and deleted from the dead letters in the same call, so running a
# redrive twice moves each event once. Returns {dead-letter id, new id} pairs.
REDRIVE = r"""#!lua
local strip = {dlqreason=1, dlqerror=1, dlqattempts=1, dlqid=1, dlqstream=1, dlqgroup=1,
               dlqconsumer=1, dlqtime=1}
local out = {}
for _, id in ipairs(ARGV) do
  local rows = redis.call('XRANGE', KEYS[1], id, id)
  if rows[1] then
    local f = rows[1][2]
    local args = {KEYS[2], '*'}
    for j = 1, #f, 2 do
      if not strip[f[j]] then args[#args+1] = f[j]; args[#args+1] = f[j+1] end
    end
    if #args > 2 then
      out[#out+1] = {id, redis.call('XADD', unpack(args))}
      redis.call('XDEL', KEYS[1], id)
    end
  end
end
return out
"""
