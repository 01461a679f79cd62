-- Durable sleep (ctx.sleep). A workflow suspended by a long sleep stays
-- PENDING with wake_at set: nothing of it is held in memory, and the wake-up
-- scheduler of its executor claims it when wake_at has passed. NULL for every
-- workflow that is not suspended (running, waiting for recovery, finished).
-- Adding a nullable column without a default rewrites nothing.
ALTER TABLE workflows ADD COLUMN wake_at timestamptz;

-- The scheduler's look-ups: the earliest wake-up of one executor, and its due
-- workflows in wake-up order. Partial on wake_at IS NOT NULL, so it holds only
-- suspended workflows and stays small, and no query that does not itself
-- require wake_at IS NOT NULL can use it: the checkpoint writes' "this
-- workflow, if PENDING" checks keep using the primary key (see 0001).
CREATE INDEX workflows_executor_wake_at ON workflows (executor_id, wake_at) WHERE wake_at IS NOT NULL;
