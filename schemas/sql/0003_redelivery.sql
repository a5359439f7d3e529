-- Targeted redelivery (services/redelivery): tasks that were sent their event and have not
-- acknowledged yet. erasure_tasks_due covers pending and retrying only; without this index
-- every redelivery poll would scan all tasks ever written, of which almost all are acked.
-- Partial on the open states, so it stays as small as the work awaiting an answer.
CREATE INDEX erasure_tasks_awaiting_ack ON erasure_tasks (dispatched_at)
  WHERE state IN ('dispatched', 'retrying');
