-- Several instances on one database. Each live engine has a row here and
-- beats its heartbeat_at every heartbeatMs; an executor whose heartbeat is
-- older than its own lease_ms (judged by the database's clock), or that
-- stopped gracefully (stopped_at), is dead, and the living adopt its PENDING
-- workflows.
CREATE TABLE executors (
  executor_id   text PRIMARY KEY,
  -- Random per engine start: which process holds the id right now. A process
  -- whose beat no longer matches it was declared dead and replaced.
  instance      text NOT NULL,
  -- The appVersion option of the process holding the id (NULL: not pinned).
  app_version   text,
  lease_ms      integer NOT NULL CHECK (lease_ms > 0),
  started_at    timestamptz NOT NULL DEFAULT now(),
  heartbeat_at  timestamptz NOT NULL DEFAULT now(),
  stopped_at    timestamptz
);

-- Executors that wrote workflows before this migration have no row. Those
-- with PENDING work get one that looks alive for one lease of 3 s: after it,
-- if no process with that id is beating, the living adopt its work.
INSERT INTO executors (executor_id, instance, lease_ms)
SELECT DISTINCT executor_id, 'before-0003', 3000 FROM workflows WHERE status = 'PENDING';

-- With appVersion set, instances run only workflows of their own version
-- (NULL: started by an instance without appVersion, run by any such).
ALTER TABLE workflows ADD COLUMN app_version text;
