-- The client's `customMetadata` (Meilisearch 1.50's query parameter on document writes),
-- shown last in the task's views; NULL when the client gave none.
ALTER TABLE tasks ADD COLUMN custom_metadata TEXT;
