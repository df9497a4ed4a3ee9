-- Miroir control plane schema (SQLite). Applied at start; recorded in _sqlx_migrations.

-- Every committed topology version, newest last. `snapshot` is an encoded
-- miroir.v1.Topology protobuf message; old versions are pruned beyond a retention count.
CREATE TABLE topology_versions (
    version         INTEGER PRIMARY KEY,
    committed_at_ms INTEGER NOT NULL,
    reason          TEXT    NOT NULL,
    snapshot        BLOB    NOT NULL
);

-- The leader lease. Taking it from another holder bumps fencing_token; every write the
-- leader makes checks the token in the same transaction.
CREATE TABLE leader_lease (
    name            TEXT    PRIMARY KEY,
    holder          TEXT    NOT NULL,
    holder_address  TEXT    NOT NULL,
    fencing_token   INTEGER NOT NULL,
    acquired_at_ms  INTEGER NOT NULL,
    expires_at_ms   INTEGER NOT NULL
);

-- Named counters (task uids never repeat, even after tasks are deleted).
CREATE TABLE sequences (
    name TEXT    PRIMARY KEY,
    next INTEGER NOT NULL
);
INSERT INTO sequences (name, next) VALUES ('task_uid', 0);

-- Client tasks: one fleet-wide uid backed by tasks on many nodes.
CREATE TABLE tasks (
    uid            INTEGER PRIMARY KEY,
    index_uid      TEXT,
    task_type      TEXT    NOT NULL,
    node_tasks     TEXT    NOT NULL, -- JSON: [{"node_id": "...", "node_task_uid": 12}]
    details        TEXT    NOT NULL, -- JSON: Meilisearch "details" object
    enqueued_at_ms INTEGER NOT NULL
);
CREATE INDEX tasks_by_index ON tasks (index_uid, uid);
