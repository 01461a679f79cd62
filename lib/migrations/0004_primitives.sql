-- Durable primitives: messages, events, streams, child workflows,
-- timeouts, cancel / resume / fork, retention. Nullable columns without
-- defaults: adding them rewrites nothing.

-- parent_id: the workflow that started this one with ctx.startChild.
-- deadline_at: its timeout; past it (by the database's clock) the workflow
-- is cancelled, its children too.
-- waiting_topic: while suspended in a long ctx.recv, the topic it waits on
-- (wake_at is then its timeout): a message on that topic wakes it.
ALTER TABLE workflows
  ADD COLUMN parent_id text,
  ADD COLUMN deadline_at timestamptz,
  ADD COLUMN waiting_topic text;

CREATE INDEX workflows_parent ON workflows (parent_id, created_at) WHERE parent_id IS NOT NULL;
CREATE INDEX workflows_deadline ON workflows (executor_id, deadline_at) WHERE deadline_at IS NOT NULL;
-- Keyset paging (created_at, workflow_id) and retention (completed_at).
CREATE INDEX workflows_created_at_id ON workflows (created_at, workflow_id);
DROP INDEX workflows_created_at;
CREATE INDEX workflows_status_created_at ON workflows (status, created_at, workflow_id);
CREATE INDEX workflows_completed_at ON workflows (completed_at) WHERE completed_at IS NOT NULL;

-- When a step began (the engine's reading of the database's clock); created_at is when its
-- checkpoint committed.
ALTER TABLE steps ADD COLUMN started_at timestamptz;

-- Messages to a workflow, in send order per topic ('' when none was given).
-- A message is consumed by one ctx.recv, whose step it records; it stays,
-- consumed, until retention deletes its workflow, so that a repeated send
-- with the same idempotency key is still recognised afterwards.
CREATE TABLE messages (
  workflow_id      text NOT NULL,
  topic            text NOT NULL,
  seq              bigint GENERATED ALWAYS AS IDENTITY,
  message          text NOT NULL,
  idempotency_key  text,
  consumed_step    integer,
  created_at       timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (workflow_id, topic, seq)
);
CREATE UNIQUE INDEX messages_idempotency ON messages (workflow_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX messages_unconsumed ON messages (workflow_id, topic, seq) WHERE consumed_step IS NULL;

-- Events a workflow set with ctx.setEvent: every value, keyed by the step
-- that set it; the latest value of a key is its row with the highest step.
CREATE TABLE events (
  workflow_id  text NOT NULL,
  key          text NOT NULL,
  step_id      integer NOT NULL,
  value        text NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (workflow_id, step_id)
);
CREATE INDEX events_latest ON events (workflow_id, key, step_id DESC);

-- Streams a workflow writes with ctx.writeStream, one row per value at its
-- offset (0, 1, ...); ctx.closeStream writes a last row with closed = true.
-- step_id: the step that wrote it (fork copies the rows of the steps it keeps).
CREATE TABLE streams (
  workflow_id  text NOT NULL,
  key          text NOT NULL,
  "offset"     integer NOT NULL,
  step_id      integer NOT NULL,
  value        text,
  closed       boolean NOT NULL DEFAULT false,
  created_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (workflow_id, key, "offset")
);
