-- When a task's recorded outcome started and finished (ms since the Unix epoch), so
-- `GET /tasks` start and finish date filters are applied here to finished tasks. Outcomes
-- recorded before these columns existed keep NULL; the gateways check those from their
-- recorded view.
ALTER TABLE tasks ADD COLUMN outcome_started_ms BIGINT;
ALTER TABLE tasks ADD COLUMN outcome_finished_ms BIGINT;
