-- Runs with search_path set to the engine's schema, inside the migration
-- runner's transaction and advisory lock.

-- One row per workflow. The row is the unit of ownership: executor_id names the
-- process that runs it, and epoch is a fencing token bumped whenever ownership
-- changes (recovery today; adoption by another executor later). Every write a
-- runner makes is conditional on the epoch it was given, so a stale owner's
-- writes match no row.
CREATE TABLE workflows (
  workflow_id     text PRIMARY KEY,
  name            text NOT NULL,
  status          text NOT NULL CHECK (status IN ('PENDING', 'SUCCESS', 'ERROR', 'MAX_RECOVERY_ATTEMPTS_EXCEEDED', 'CANCELLED')),
  input           text NOT NULL,
  input_hash      text NOT NULL,
  output          text,
  error           text,
  request_id      text,
  executor_id     text NOT NULL,
  epoch           bigint NOT NULL DEFAULT 1,
  attempts        integer NOT NULL DEFAULT 1,
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  completed_at    timestamptz
);

-- Recovery looks up the PENDING workflows of one executor. Deliberately not a
-- partial index (WHERE status = 'PENDING'): the planner then prefers it for
-- every "this workflow, if PENDING" check in the checkpoint writes, scanning
-- all pending workflows per write instead of looking one up by primary key.
CREATE INDEX workflows_executor_status ON workflows (executor_id, status);
CREATE INDEX workflows_created_at ON workflows (created_at);
CREATE INDEX workflows_request_id ON workflows (request_id) WHERE request_id IS NOT NULL;
CREATE INDEX workflows_name_created_at ON workflows (name, created_at);

-- One row per completed step (or transaction), keyed by call order. A row exists
-- only once the step's outcome is durable; replay returns it instead of running
-- the step again.
-- No foreign key to workflows, on purpose: every insert joins its workflow row
-- (which must exist, be PENDING and hold the writer's epoch), so the key's
-- trigger would only repeat that check, and its per-row KEY SHARE lock costs
-- about a third of the checkpoint write. Deleting a workflow deletes its steps
-- explicitly.
CREATE TABLE steps (
  workflow_id  text NOT NULL,
  step_id      integer NOT NULL,
  name         text NOT NULL,
  output       text,
  error        text,
  created_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (workflow_id, step_id)
);
