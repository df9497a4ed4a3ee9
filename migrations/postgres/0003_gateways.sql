-- Gateways as each control plane last saw them (their applied topology version and last
-- heartbeat), so the leader's barrier also counts gateways connected to followers.
CREATE TABLE gateways (
    id              TEXT   PRIMARY KEY,
    address         TEXT   NOT NULL,
    applied_version BIGINT NOT NULL,
    last_seen_ms    BIGINT NOT NULL
);
