-- 8: model-command limits shared by every process on this database: each member's last use per
-- channel (cooldowns), and leases that expire, for requests in flight per channel and for locks
-- (a story's turn). A lease of a process that died without giving it back runs out by itself.

CREATE TABLE cooldowns (
    scope_id INTEGER NOT NULL,
    user_id INTEGER NOT NULL,
    used_at REAL NOT NULL,
    PRIMARY KEY (scope_id, user_id)
);

CREATE TABLE leases (
    ticket INTEGER NOT NULL,
    scope TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (ticket, scope)
);

CREATE INDEX leases_by_scope ON leases (scope, expires_at);
