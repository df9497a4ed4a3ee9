-- The taskCancelation task that targeted this task, if any (shown as `canceledBy` once the
-- task's status is `canceled`).
ALTER TABLE tasks ADD COLUMN canceled_by INTEGER;
CREATE INDEX tasks_canceled_by ON tasks (canceled_by) WHERE canceled_by IS NOT NULL;
CREATE INDEX tasks_enqueued_at ON tasks (enqueued_at_ms);
