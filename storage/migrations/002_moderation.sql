-- 2: moderation. Rules per channel (a thread is a channel with its own id), blocked
-- phrases, and an audit log of moderator actions and settings changes.

CREATE TABLE channel_moderation (
    channel_id INTEGER PRIMARY KEY,
    locked INTEGER NOT NULL DEFAULT 0 CHECK (locked IN (0, 1)),
    cooldown_s INTEGER NOT NULL DEFAULT 0 CHECK (cooldown_s >= 0),
    max_inflight INTEGER NOT NULL DEFAULT 0 CHECK (max_inflight >= 0),
    updated_by INTEGER NOT NULL,
    updated_at REAL NOT NULL
);

CREATE TABLE blocked_phrases (
    channel_id INTEGER NOT NULL,
    phrase TEXT NOT NULL,  -- normalised: lower-case, single spaces
    added_by INTEGER NOT NULL,
    added_at REAL NOT NULL,
    PRIMARY KEY (channel_id, phrase)
);

CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    scope TEXT NOT NULL CHECK (scope IN ('guild', 'channel')),
    scope_id INTEGER NOT NULL,
    actor_id INTEGER NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL,
    at REAL NOT NULL
);

CREATE INDEX audit_log_by_scope ON audit_log (scope, scope_id, id);
