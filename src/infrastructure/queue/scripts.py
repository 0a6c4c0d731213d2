"""Every Lua script of the queue protocol, in one place, with what each keeps true.

The rule they share: a running job's score on its queue is its lease's deadline (on Redis's clock),
so running jobs are out of the range a claim reads, and a job whose worker died is ready again when
its lease lapses. The lease is the job's in-progress key, valued with its worker's id; only that
worker may finish, renew or give back the job. Callers: `lease_consumer.py` (claim, finish, cron tick),
`handoff.py` (register, stop, release), `redis_queue.py` (enqueue) and `deployment_registry.py`
(renew, versions).
"""

from src.infrastructure.queue.keys import (
    DONE_CHANNEL,
    IN_PROGRESS_PREFIX,
    JOB_PREFIX,
    RESULT_PREFIX,
    RETRY_PREFIX,
)

# --- enqueue (redis_queue.py) ---
# KEYS: the queue, its wake channel, its idle workers, arq's abort set.
# ARGV: job key prefix, result key prefix, expiry ms, score, in-progress prefix, retry prefix, inbox
# prefix, then (id, payload) pairs. Returns one 1 (added) or 0 (already queued or has a cached
# result) per job, in order.
# Each added job goes to one idle worker registered for a direct hand-off while any is left: the
# job's lease is set to that worker (as its claim would) and the job, with its try count, pushed to
# the worker's inbox, where it is waiting in a blocking pop (no wake-up, no claim round trip). The
# job stays in the queue, as a claimed job does, scored with its lease's deadline: if that worker
# died, its lease lapses and any worker claims it. Idle workers are woken (pub/sub) for the jobs
# nobody was handed. Lapsed registrations are skipped here and removed by the next registration
# (this script stays short: it runs on a Redis that has often just woken up, where every call costs
# several times its usual).
# The job and result keys are derived in the script (single-instance Redis, as arq itself assumes),
# so a chunk of a thousand jobs is one call instead of a thousand.
ENQUEUE_MANY_SCRIPT = """
local jp, rp, px, score = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local ipp, rtp, inbox = ARGV[5], ARGV[6], ARGV[7]
local t = redis.call('TIME')
local now_ms = t[1] * 1000 + math.floor(t[2] / 1000)
local now = string.format('%d', now_ms)
local idle = {}
if tonumber(score) <= now_ms then  -- a scheduled job waits for its time: no hand-off, no wake-up
  idle = redis.call('ZRANGEBYSCORE', KEYS[3], '(' .. now, '+inf', 'LIMIT', 0, (#ARGV - 7) / 2)
end
local handed = 0
local added, members, unhanded = {}, {}, 0
for i = 8, #ARGV, 2 do
  local id, payload = ARGV[i], ARGV[i + 1]
  if redis.call('EXISTS', jp .. id, rp .. id) == 0 then
    redis.call('PSETEX', jp .. id, px, payload)
    members[#members + 1] = score
    members[#members + 1] = id
    added[#added + 1] = 1
    local given = false
    if handed < #idle then
      local member = idle[handed + 1]
      local lease, worker = string.match(member, '^(%d+) (.+)$')
      if redis.call('SET', ipp .. id, worker, 'NX', 'PX', lease) then
        members[#members - 1] = string.format('%d', now_ms + tonumber(lease))  -- leased, as a claim
        handed = handed + 1
        redis.call('ZREM', KEYS[3], member)
        local try = 1
        if not redis.call('SET', rtp .. id, 1, 'EX', 88400, 'NX') then
          try = redis.call('INCR', rtp .. id)
          redis.call('EXPIRE', rtp .. id, 88400)
        end
        local aborted = redis.call('ZREM', KEYS[4], id)
        local item = table.concat({try, score, aborted, #id, id .. payload}, ' ')
        redis.call('RPUSH', inbox .. worker, item)
        redis.call('PEXPIRE', inbox .. worker, lease)
        given = true
      end
    end
    if not given then unhanded = unhanded + 1 end
  else
    added[#added + 1] = 0
  end
end
if #members > 0 then redis.call('ZADD', KEYS[1], unpack(members)) end
if unhanded > 0 and tonumber(score) <= now_ms then redis.call('PUBLISH', KEYS[2], unhanded) end
return added
"""

# --- claim and finish (lease_consumer.py) ---
# Read the ready jobs, claim up to `limit` of them and fetch what running them needs, in one call
# (arq reads, then claims per job, then fetches per job in a transaction of its own).
# KEYS: queue, abort set. ARGV: now_ms, worker_id, lease_ms, in-progress prefix, limit, read cap,
# job key prefix, retry key prefix.
# Returns {more (1: the queue may hold more ready jobs), then per claimed job: id, score, payload or
# false, try, aborted (0|1)}. Each claim is a lease (the in-progress key, valued with this worker's
# id) only this worker's finish clears; the try count and abort flag are arq's (`INCR` of its retry
# key, `ZREM` from its abort set). A claimed job's score becomes its lease's deadline: running jobs
# leave the ready range, so a claim reads only what it can take (arq reads `queue_read_limit` ids
# and tries each: with as many jobs running across the workers, nobody could claim the next one).
# Should the worker die, the score and the lease lapse together and the job is ready again (the
# deadline is on Redis's clock, as the lease's expiry and a hand-off's deadline are). Ids that
# another worker holds are skipped, reading further, up to the read cap.
CLAIM_SCRIPT = """
local limit, cap = tonumber(ARGV[5]), tonumber(ARGV[6])
local t = redis.call('TIME')
local deadline = string.format('%d', t[1] * 1000 + math.floor(t[2] / 1000) + tonumber(ARGV[3]))
local claimed = {0}
local skipped, read = 0, 0
while true do
  local want = math.min(limit + 1, cap - read)
  if want <= 0 then claimed[1] = 1 break end
  local ready = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', skipped, want)
  read = read + #ready / 2
  for i = 1, #ready, 2 do
    if (#claimed - 1) / 5 >= limit then claimed[1] = 1 break end
    local id = ready[i]
    if redis.call('SET', ARGV[4] .. id, ARGV[2], 'NX', 'PX', ARGV[3]) then
      redis.call('ZADD', KEYS[1], 'XX', deadline, id)
      local try = redis.call('INCR', ARGV[8] .. id)
      redis.call('EXPIRE', ARGV[8] .. id, 88400)
      claimed[#claimed + 1] = id
      claimed[#claimed + 1] = ready[i + 1]
      claimed[#claimed + 1] = redis.call('GET', ARGV[7] .. id)
      claimed[#claimed + 1] = try
      claimed[#claimed + 1] = redis.call('ZREM', KEYS[2], id)
    else
      skipped = skipped + 1
    end
  end
  if claimed[1] == 1 or #ready / 2 < want then break end
end
return claimed
"""
# KEYS: queue, abort set. ARGV: worker_id, finish (0|1), result or '', result px (0: keep),
# keep-in-progress px or '', score or '', job id. The job's own keys are built here from arq's
# prefixes, as the claim builds them (fewer arguments to encode and send per finished job); a
# finished job's id is published on the done channel for the callers waiting on it. A job that stays
# queued (a retry, or put back as the worker stops) gets `score` back in place of its lease deadline:
# its first score, or when it is deferred, that plus the deferral (arq's `ZINCRBY` of the same).
FINISH_SCRIPT = (
    """
local id = ARGV[7]
local in_progress = '$IN_PROGRESS' .. id
if redis.call('GET', in_progress) ~= ARGV[1] then return 0 end
if ARGV[5] == '' then redis.call('DEL', in_progress) else redis.call('PEXPIRE', in_progress, ARGV[5]) end
if ARGV[2] == '1' then
  if ARGV[3] ~= '' then
    if ARGV[4] == '0' then redis.call('SET', '$RESULT' .. id, ARGV[3])
    else redis.call('SET', '$RESULT' .. id, ARGV[3], 'PX', ARGV[4]) end
  end
  redis.call('DEL', '$RETRY' .. id, '$JOB' .. id)
  redis.call('ZREM', KEYS[2], id)
  redis.call('ZREM', KEYS[1], id)
  redis.call('PUBLISH', '$DONE', id)
elseif ARGV[6] ~= '' then
  redis.call('ZADD', KEYS[1], 'XX', ARGV[6], id)
end
return 1
""".replace("$IN_PROGRESS", IN_PROGRESS_PREFIX)
    .replace("$RESULT", RESULT_PREFIX)
    .replace("$RETRY", RETRY_PREFIX)
    .replace("$JOB", JOB_PREFIX)
    .replace("$DONE", DONE_CHANNEL)
)
# Queue a cron tick under its unique id, once across the queue's workers, in one step (a check, then
# a write, would let two workers whose schedules lag both queue it). A tick already queued (its
# payload), running or recently done (its lease, kept `CRON_LEASE_KEEP_MS` after it ends: a cron
# stores no result by default) or with a result is not queued again.
# KEYS: payload, result, in-progress, queue. ARGV: payload, payload px, score, job id. 1: queued.
ENQUEUE_TICK_SCRIPT = """
if redis.call('EXISTS', KEYS[1], KEYS[2], KEYS[3]) > 0 then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[4], 'NX', ARGV[3], ARGV[4])
return 1
"""

# --- direct hand-off (handoff.py) ---
# Job items start with their try count (a digit); anything else in an inbox is a stop token: '' (the
# registration found jobs waiting) or 'stop:<wait number>' (`unblock` of that wait).
# KEYS: idle workers, inbox. ARGV: member, wait ms, wait number.
# Jobs left in the inbox come back, and so does an `unblock` of this very wait that overtook the
# registration (it travels on another connection): in both cases the worker is not registered and
# the blocking pop sent with this call is released at once. Otherwise registers until now + wait on
# Redis's clock and returns nothing. Stop tokens of earlier waits are dropped, and registrations
# that lapsed (workers that died waiting) removed.
REGISTER_SCRIPT = """
local items = redis.call('LRANGE', KEYS[2], 0, -1)
redis.call('DEL', KEYS[2])
local jobs, stopped = {}, false
for _, item in ipairs(items) do
  if string.find(item, '^%d') then jobs[#jobs + 1] = item
  elseif item == 'stop:' .. ARGV[3] then stopped = true end
end
if #jobs > 0 or stopped then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('RPUSH', KEYS[2], '')
  redis.call('PEXPIRE', KEYS[2], 60000)
  return jobs
end
local t = redis.call('TIME')
local now, wait = t[1] * 1000 + math.floor(t[2] / 1000), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now))  -- lapsed (dead) workers
redis.call('ZADD', KEYS[1], string.format('%d', now + wait), ARGV[1])
if redis.call('PTTL', KEYS[1]) < wait + 60000 then redis.call('PEXPIRE', KEYS[1], wait + 60000) end
return jobs
"""
# KEYS: idle workers, inbox. ARGV: member, take (1: return the inbox's jobs and delete it;
# 0: release the blocking pop of wait number ARGV[3] with its stop token).
STOP_SCRIPT = """
redis.call('ZREM', KEYS[1], ARGV[1])
if ARGV[2] == '1' then
  local items = redis.call('LRANGE', KEYS[2], 0, -1)
  redis.call('DEL', KEYS[2])
  local jobs = {}
  for _, item in ipairs(items) do
    if string.find(item, '^%d') then jobs[#jobs + 1] = item end
  end
  return jobs
end
redis.call('RPUSH', KEYS[2], 'stop:' .. ARGV[3])
redis.call('PEXPIRE', KEYS[2], 60000)
return {}
"""
# KEYS: in-progress, retry, abort set, wake channel, queue. ARGV: worker id, job id, aborted (0|1),
# now ms, the job's score. Gives back a job handed to this worker that it will not run: the lease
# and the try go, the job's score is its own again instead of the lease's deadline, the abort request
# (if one came with it) stays, and idle workers are woken to claim the job.
RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  if redis.call('DECR', KEYS[2]) <= 0 then redis.call('DEL', KEYS[2]) end
  redis.call('ZADD', KEYS[5], 'XX', ARGV[5], ARGV[2])
end
if ARGV[3] == '1' then redis.call('ZADD', KEYS[3], ARGV[4], ARGV[2]) end
redis.call('PUBLISH', KEYS[4], 1)
return 1
"""

# --- leases and versions (deployment_registry.py) ---
# Renew a lease only while this worker holds it: a paused-then-resumed zombie cannot revive a lease
# another worker has taken since. The job's score on the queue is its lease's deadline (see the claim
# in CLAIM_SCRIPT above): it moves with the lease, and only while the job is still queued.
# KEYS: in-progress keys. ARGV: worker id, lease ms, queue key, then the job ids. The deadline is on
# Redis's clock, as the lease's expiry is.
RENEW_LEASES = """
local t = redis.call('TIME')
local deadline = string.format('%d', t[1] * 1000 + math.floor(t[2] / 1000) + tonumber(ARGV[2]))
local renewed = 0
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then
    redis.call('PEXPIRE', KEYS[i], ARGV[2])
    redis.call('ZADD', ARGV[3], 'XX', deadline, ARGV[3 + i])
    renewed = renewed + 1
  end
end
return renewed
"""
ALLOW_FIRST_VERSION = """
if redis.call('SCARD', KEYS[1]) == 0 and redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 0 then
  redis.call('SADD', KEYS[1], ARGV[1])
  return 1
end
return 0
"""
# An API's beat: publish the data fingerprint, and allow the API's own version unless an operator
# retired it (a retired version is allowed again only by `allow-version`). 1: allowed, 0: retired.
# KEYS: versions, retired, fingerprint. ARGV: version, fingerprint JSON.
ANNOUNCE = """
redis.call('SET', KEYS[3], ARGV[2])
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then return 0 end
redis.call('SADD', KEYS[1], ARGV[1])
return 1
"""
RELEASE_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
