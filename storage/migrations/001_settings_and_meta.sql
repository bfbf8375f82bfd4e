-- 1: channel settings, one row per key per scope (a thread is a 'channel' with its own id),
-- and a key-value meta table (command hashes, the moderator role).

CREATE TABLE settings (
    scope TEXT NOT NULL CHECK (scope IN ('guild', 'channel')),
    scope_id INTEGER NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,  -- JSON
    updated_by INTEGER NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (scope, scope_id, key)
);

CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
