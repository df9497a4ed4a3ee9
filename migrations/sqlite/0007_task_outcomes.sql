-- A finished task's Meilisearch view (JSON), recorded once by the gateway that first saw
-- it finished: later reads need no node, whose own task may since be gone.
ALTER TABLE tasks ADD COLUMN outcome TEXT;
