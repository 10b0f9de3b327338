-- levee's shared limiter: one call applies the settlements a process has
-- queued, then tries at most one reservation, atomically. The buckets are
-- the ones of bucket.rs (level, held, updated, closed-until, and the
-- upstream's reported limit), refilled on the server's clock, so that
-- processes whose clocks disagree still agree on the budget.
--
-- ARGV[1] is JSON: {"ops": [...], "ask": {...} or absent}. The reply is
-- {"none"}, {"ok", taken...}, {"wait", ms}, {"busy"} or {"never", kind}.

local req = cjson.decode(ARGV[1])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
-- An idle bucket is full again within a minute; keep it a while longer.
local KEEP = 600000

local function ceiling(b)
  return math.max(b.cap - b.h, 0)
end

-- Buckets read in this call, by key: each is read once and written once
-- (at the end), however many operations touch it.
local loaded = {}
local dirty = {}

-- The bucket at `k` with configured capacity `cap`, refilled to now.
local function load(k, cap)
  if loaded[k] then
    return loaded[k]
  end
  local v = redis.call('HMGET', k, 'l', 'h', 't', 'c', 'm')
  local reported = tonumber(v[5])
  local capacity = cap
  if reported and reported > 0 and reported < capacity then
    capacity = reported
  end
  local b = {
    k = k, cap = capacity, rate = capacity / 60000, m = reported,
    l = tonumber(v[1]) or capacity, h = tonumber(v[2]) or 0,
    t = tonumber(v[3]) or now, c = tonumber(v[4]) or 0,
  }
  if now > b.t then
    b.l = math.min(b.l + (now - b.t) * b.rate, ceiling(b))
    b.t = now
  end
  loaded[k] = b
  return b
end

local function save(b)
  dirty[b.k] = b
end

local function write_back()
  for k, b in pairs(dirty) do
    if b.m then
      redis.call('HSET', k, 'l', tostring(b.l), 'h', tostring(b.h),
        't', tostring(b.t), 'c', tostring(b.c), 'm', tostring(b.m))
    else
      redis.call('HSET', k, 'l', tostring(b.l), 'h', tostring(b.h),
        't', tostring(b.t), 'c', tostring(b.c))
    end
    redis.call('PEXPIRE', k, KEEP + math.max(b.c - now, 0))
  end
end

local function apply(op)
  if op.o == 'settle' then
    -- An estimate of `held` really cost `actual`.
    local b = load(op.k, op.cap)
    b.h = math.max(b.h - op.held, 0)
    b.l = math.min(b.l + op.held - op.actual, ceiling(b))
    save(b)
  elseif op.o == 'refund' then
    local b = load(op.k, op.cap)
    b.l = math.min(b.l + op.n, ceiling(b))
    save(b)
  elseif op.o == 'release' then
    redis.call('ZREM', op.k, unpack(op.ids))
  elseif op.o == 'renew' then
    for _, id in ipairs(op.ids) do
      if redis.call('ZSCORE', op.k, id) then
        redis.call('ZADD', op.k, now + op.ttl, id)
      end
    end
    redis.call('PEXPIRE', op.k, op.ttl * 2)
  elseif op.o == 'correct' then
    -- The upstream's word only ever lowers the capacity and the level.
    local b = load(op.k, op.cap)
    if op.limit and op.limit > 0 then
      b.m = op.limit
      local capacity = math.min(op.cap, op.limit)
      if capacity ~= b.cap then
        b.cap = capacity
        b.rate = capacity / 60000
        b.l = math.min(b.l, ceiling(b))
      end
    end
    if op.remaining then
      b.l = math.min(b.l, op.remaining)
    end
    save(b)
  elseif op.o == 'close' then
    local b = load(op.k, op.cap)
    b.c = math.max(b.c, now + op.wait)
    save(b)
  end
end

local function ask(a)
  local wait = 0
  local wanted = {}
  for i, w in ipairs(a.b) do
    local b = load(w.k, w.cap)
    local n = w.n
    if w.cap_to_capacity then
      n = math.min(n, b.cap)
    end
    if n > b.cap then
      return {'never', w.kind}
    end
    local at = now
    local missing = n - b.l
    if missing > 1e-9 then
      at = now + math.ceil(missing / b.rate - 1e-6)
    end
    if b.c > at then
      at = b.c
    end
    wait = math.max(wait, at - now)
    wanted[i] = {b, n}
  end
  local busy = false
  for _, z in ipairs(a.z) do
    if z.n > z.max then
      return {'never', 'concurrency'}
    end
    redis.call('ZREMRANGEBYSCORE', z.k, '-inf', now)
    if redis.call('ZCARD', z.k) + z.n > z.max then
      busy = true
    end
  end
  if wait > 0 then
    return {'wait', wait}
  end
  if busy then
    return {'busy'}
  end
  local taken = {'ok'}
  for i, w in ipairs(a.b) do
    local b, n = wanted[i][1], wanted[i][2]
    b.l = b.l - n
    if w.hold then
      b.h = b.h + n
    end
    save(b)
    taken[#taken + 1] = n
  end
  for _, z in ipairs(a.z) do
    for j = 1, z.n do
      redis.call('ZADD', z.k, now + a.ttl, a.id .. ':' .. j)
    end
    redis.call('PEXPIRE', z.k, a.ttl * 2)
  end
  return taken
end

for _, op in ipairs(req.ops) do
  apply(op)
end
local answer = {'none'}
if req.ask then
  answer = ask(req.ask)
end
write_back()
return answer
