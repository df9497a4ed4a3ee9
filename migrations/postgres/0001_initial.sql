-- Miroir control plane schema (Postgres): the same tables as migrations/sqlite/0001–0004.
-- Applied at start by every replica; sqlx's migrator holds an advisory lock while it runs,
-- so replicas booting together apply it exactly once, and records it in _sqlx_migrations.

-- Every committed topology version, newest last. `snapshot` is an encoded
-- miroir.v1.Topology protobuf message; old versions are pruned beyond a retention count.
CREATE TABLE topology_versions (
    version         BIGINT PRIMARY KEY,
    committed_at_ms BIGINT NOT NULL,
    reason          TEXT   NOT NULL,
    snapshot        BYTEA  NOT NULL
);

-- The leader lease. Taking it from another holder (only once it expired) bumps
-- fencing_token; every write the leader makes checks the token in the same transaction,
-- holding the row with FOR SHARE so a takeover waits for it or fences it.
CREATE TABLE leader_lease (
    name            TEXT   PRIMARY KEY,
    holder          TEXT   NOT NULL,
    holder_address  TEXT   NOT NULL,
    fencing_token   BIGINT NOT NULL,
    acquired_at_ms  BIGINT NOT NULL,
    expires_at_ms   BIGINT NOT NULL
);

-- Named counters (task uids never repeat, even after tasks are deleted).
CREATE TABLE sequences (
    name TEXT   PRIMARY KEY,
    next BIGINT NOT NULL
);
INSERT INTO sequences (name, next) VALUES ('task_uid', 0);

-- Client tasks: one fleet-wide uid backed by tasks on many nodes.
CREATE TABLE tasks (
    uid            BIGINT PRIMARY KEY,
    index_uid      TEXT,
    task_type      TEXT   NOT NULL,
    node_tasks     TEXT   NOT NULL, -- JSON: [{"node_id": "...", "node_task_uid": 12}]
    details        TEXT   NOT NULL, -- JSON: Meilisearch "details" object
    enqueued_at_ms BIGINT NOT NULL,
    error          TEXT   NOT NULL DEFAULT '', -- JSON error when it failed outside the nodes
    canceled_by    BIGINT,          -- the taskCancelation task that targeted it
    status         TEXT,            -- set when the control plane decides the outcome
    started_at_ms  BIGINT NOT NULL DEFAULT 0,
    finished_at_ms BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX tasks_by_index ON tasks (index_uid, uid);
CREATE INDEX tasks_canceled_by ON tasks (canceled_by) WHERE canceled_by IS NOT NULL;
CREATE INDEX tasks_enqueued_at ON tasks (enqueued_at_ms);

-- Settings changes queued for the leader's two-phase commit, run oldest first.
CREATE TABLE settings_changes (
    id            BIGSERIAL PRIMARY KEY,
    index_uid     TEXT   NOT NULL,
    task_uid      BIGINT,          -- the client's task; NULL for Miroir's own at creation
    patch         TEXT   NOT NULL, -- JSON: the client's settings object (PATCH semantics)
    created_at_ms BIGINT NOT NULL
);
