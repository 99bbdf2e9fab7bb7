"""The Redis engine's Lua scripts: each runs atomically on the Redis that holds the channel.

Keys and message formats are described in :mod:`tidings.engine.redis`.
"""

from __future__ import annotations

__all__ = ["HISTORY", "PRESENCE_ADD", "PRESENCE_GET", "PRESENCE_REMOVE", "PUBLISH",
           "USER_CONNECTION_ADD"]

# KEYS: stream, meta, result. ARGV: pubsub channel, payload, size (0: no history), ttl,
# meta_ttl, new epoch, use result key (0/1), result ttl, flag ("d": the publisher asked for
# delta). Pub/sub message: offset:epoch:flag:payload.
PUBLISH = """
local stream, meta, result = KEYS[1], KEYS[2], KEYS[3]
local size = tonumber(ARGV[3])
if ARGV[7] == '1' then
  local seen = redis.call('get', result)
  if seen then return {seen, 1} end
end
local offset, epoch = 0, ''
if size > 0 then
  epoch = redis.call('hget', meta, 'e')
  if not epoch then
    epoch = ARGV[6]
    redis.call('hset', meta, 'e', epoch)
    redis.call('del', stream)
  end
  offset = redis.call('hincrby', meta, 's', 1)
  local meta_ttl = tonumber(ARGV[5])
  if meta_ttl > 0 then redis.call('expire', meta, meta_ttl) end
  redis.call('xadd', stream, 'MAXLEN', size, offset .. '-1', 'd', ARGV[2])
  redis.call('expire', stream, tonumber(ARGV[4]))
end
local position = offset .. ':' .. epoch
redis.call('publish', ARGV[1], position .. ':' .. ARGV[9] .. ':' .. ARGV[2])
if ARGV[7] == '1' then redis.call('set', result, position, 'EX', tonumber(ARGV[8])) end
return {position, 0}
"""

# KEYS: stream, meta. ARGV: include items (0/1), since ('' or offset), limit (-1: all),
# reverse (0/1), meta_ttl, new epoch.
HISTORY = """
local stream, meta = KEYS[1], KEYS[2]
local epoch = redis.call('hget', meta, 'e')
if not epoch then
  epoch = ARGV[6]
  redis.call('hset', meta, 'e', epoch)
  redis.call('del', stream)
end
local meta_ttl = tonumber(ARGV[5])
if meta_ttl > 0 then redis.call('expire', meta, meta_ttl) end
local top = tonumber(redis.call('hget', meta, 's') or '0')
if ARGV[1] == '0' then return {top, epoch, {}} end
local limit = tonumber(ARGV[3])
local items
if ARGV[4] == '0' then
  local start = '-'
  if ARGV[2] ~= '' then start = (tonumber(ARGV[2]) + 1) .. '-0' end
  if limit > 0 then
    items = redis.call('xrange', stream, start, '+', 'COUNT', limit)
  else
    items = redis.call('xrange', stream, start, '+')
  end
else
  local stop = '+'
  if ARGV[2] ~= '' then
    local before = tonumber(ARGV[2]) - 1
    if before < 1 then return {top, epoch, {}} end
    stop = before .. '-1'
  end
  if limit > 0 then
    items = redis.call('xrevrange', stream, stop, '-', 'COUNT', limit)
  else
    items = redis.call('xrevrange', stream, stop, '-')
  end
end
return {top, epoch, items}
"""

# KEYS: zset, hash. ARGV: client id, info JSON, ttl seconds.
PRESENCE_ADD = """
local now = redis.call('time')
local ttl = tonumber(ARGV[3])
redis.call('zadd', KEYS[1], tonumber(now[1]) + tonumber(now[2]) / 1000000 + ttl, ARGV[1])
redis.call('hset', KEYS[2], ARGV[1], ARGV[2])
redis.call('expire', KEYS[1], math.ceil(ttl))
redis.call('expire', KEYS[2], math.ceil(ttl))
return 1
"""

# KEYS: zset, hash. Drops expired entries, returns the rest as a flat field/value list.
PRESENCE_GET = """
local t = redis.call('time')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local expired = redis.call('zrangebyscore', KEYS[1], '-inf', now)
for i = 1, #expired, 1000 do
  redis.call('hdel', KEYS[2], unpack(expired, i, math.min(i + 999, #expired)))
end
if #expired > 0 then redis.call('zremrangebyscore', KEYS[1], '-inf', now) end
return redis.call('hgetall', KEYS[2])
"""

# KEYS: zset, hash. ARGV: client id.
PRESENCE_REMOVE = """
redis.call('zrem', KEYS[1], ARGV[1])
redis.call('hdel', KEYS[2], ARGV[1])
return 1
"""

# KEYS: zset of the user's connections (score: expiry time). ARGV: client id, limit (0: none),
# ttl seconds. Returns 0 (over the limit, nothing changed) or 1.
USER_CONNECTION_ADD = """
local t = redis.call('time')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local limit = tonumber(ARGV[2])
redis.call('zremrangebyscore', KEYS[1], '-inf', now)
if limit > 0 and not redis.call('zscore', KEYS[1], ARGV[1])
    and redis.call('zcard', KEYS[1]) >= limit then
  return 0
end
local ttl = tonumber(ARGV[3])
redis.call('zadd', KEYS[1], now + ttl, ARGV[1])
redis.call('expire', KEYS[1], math.ceil(ttl))
return 1
"""
