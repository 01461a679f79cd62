-- Queues and schedules.

-- A queued workflow is ENQUEUED (owned by nobody: executor_id '') until an
-- instance takes it: then PENDING, owned by it, like any started workflow.
ALTER TABLE workflows DROP CONSTRAINT workflows_status_check;
ALTER TABLE workflows ADD CONSTRAINT workflows_status_check
  CHECK (status IN ('ENQUEUED', 'PENDING', 'SUCCESS', 'ERROR', 'MAX_RECOVERY_ATTEMPTS_EXCEEDED', 'CANCELLED'));

-- queue_name: the queue it was enqueued on (kept once it runs: its slot).
-- priority: lower runs first; queue_seq: first in, first out among equals.
-- visible_at: not taken before (delayMs, debounce).
-- partition_key: with a partitioned queue, the limits hold per key.
-- deduplication_id: at most one ENQUEUED or PENDING per queue and id.
-- debounce_key: enqueues with the key while one waits collapse into it.
-- dequeued_at: when an instance took it (rate limits count these).
-- timeout_ms: a queued workflow's timeout, which counts from when it is taken.
ALTER TABLE workflows
  ADD COLUMN queue_name text,
  ADD COLUMN priority integer,
  ADD COLUMN queue_seq bigint,
  ADD COLUMN visible_at timestamptz,
  ADD COLUMN partition_key text,
  ADD COLUMN deduplication_id text,
  ADD COLUMN debounce_key text,
  ADD COLUMN dequeued_at timestamptz,
  ADD COLUMN timeout_ms double precision;

CREATE SEQUENCE queue_seq;

-- What a dispatcher takes next: per queue, in order. Only ENQUEUED rows, so
-- a queue's backlog never slows another queue's dispatch.
CREATE INDEX workflows_queue_ready ON workflows (queue_name, priority, queue_seq) WHERE status = 'ENQUEUED';
-- What holds a queue's slots: its PENDING workflows (per partition).
CREATE INDEX workflows_queue_running ON workflows (queue_name, partition_key, executor_id) WHERE status = 'PENDING' AND queue_name IS NOT NULL;
-- Rate limits: what a queue started lately.
CREATE INDEX workflows_queue_dequeued ON workflows (queue_name, dequeued_at) WHERE dequeued_at IS NOT NULL;
CREATE UNIQUE INDEX workflows_queue_dedup ON workflows (queue_name, deduplication_id)
  WHERE deduplication_id IS NOT NULL AND status IN ('ENQUEUED', 'PENDING');
CREATE UNIQUE INDEX workflows_queue_debounce ON workflows (queue_name, debounce_key)
  WHERE debounce_key IS NOT NULL AND status = 'ENQUEUED';

-- One row per queue an instance dispatches: dispatchers of one queue take
-- its row's lock in turn, so that its global limits hold across instances.
CREATE TABLE queues (
  name        text PRIMARY KEY,
  created_at  timestamptz NOT NULL DEFAULT now()
);

-- Cron schedules: their state, shared by every instance.
CREATE TABLE schedules (
  name        text PRIMARY KEY,
  cron        text NOT NULL,
  timezone    text,
  paused      boolean NOT NULL DEFAULT false,
  -- The latest tick a workflow was started for (backfill resumes after it).
  last_tick   timestamptz,
  updated_at  timestamptz NOT NULL DEFAULT now()
);

-- When a dispatcher next has something to do: the earliest visible_at of a queue's waiting work.
CREATE INDEX workflows_queue_visible ON workflows (queue_name, visible_at) WHERE status = 'ENQUEUED';
