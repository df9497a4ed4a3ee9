-- The status of a task's recorded outcome, so `GET /tasks?statuses=…` is filtered here
-- for finished tasks.
ALTER TABLE tasks ADD COLUMN outcome_status TEXT;
UPDATE tasks SET outcome_status = outcome::json->>'status' WHERE outcome IS NOT NULL;
CREATE INDEX tasks_outcome_status ON tasks (outcome_status);
