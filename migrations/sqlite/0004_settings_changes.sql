-- Tasks whose outcome the control plane decides (settings changes succeed only once
-- committed): their status and times. NULL status: the node tasks decide.
ALTER TABLE tasks ADD COLUMN status TEXT;
ALTER TABLE tasks ADD COLUMN started_at_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN finished_at_ms INTEGER NOT NULL DEFAULT 0;

-- Settings changes queued for the leader's two-phase commit, run oldest first. A row is
-- deleted once its change committed or failed; the phase in between lives in the
-- topology (the index's pending_settings), so a new leader resumes where the old stopped.
CREATE TABLE settings_changes (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    index_uid     TEXT    NOT NULL,
    task_uid      INTEGER,          -- the client's task; NULL for Miroir's own at creation
    patch         TEXT    NOT NULL, -- JSON: the client's settings object (PATCH semantics)
    created_at_ms INTEGER NOT NULL
);
