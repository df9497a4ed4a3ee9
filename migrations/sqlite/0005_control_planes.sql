-- Control-plane processes seen on this store, for `miroir-ctl status`: each records its
-- own row when it starts and while it runs. Which one leads is the lease's holder.
CREATE TABLE control_planes (
    id           TEXT    PRIMARY KEY,
    address      TEXT    NOT NULL,
    last_seen_ms INTEGER NOT NULL
);
