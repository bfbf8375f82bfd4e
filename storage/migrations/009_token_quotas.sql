-- 9: token quotas. Budgets per server ('guild') or channel (a thread is a channel with its own id),
-- for everyone (role_id 0) or for one role; 0 tokens is a role's "unlimited". And the tokens each
-- member's generations wrote, per scope and UTC hour (hour: the Unix time it starts); a day is the
-- sum of its hours. Hours before the current UTC day are deleted as new ones are written.

CREATE TABLE token_budgets (
    scope TEXT NOT NULL CHECK (scope IN ('guild', 'channel')),
    scope_id INTEGER NOT NULL,
    role_id INTEGER NOT NULL,
    tokens INTEGER NOT NULL CHECK (tokens > 0 OR (tokens = 0 AND role_id <> 0)),
    per TEXT NOT NULL CHECK (per IN ('hour', 'day')),
    updated_by INTEGER NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (scope, scope_id, role_id)
);

CREATE TABLE token_usage (
    scope TEXT NOT NULL CHECK (scope IN ('guild', 'channel')),
    scope_id INTEGER NOT NULL,
    user_id INTEGER NOT NULL,
    hour INTEGER NOT NULL,
    tokens INTEGER NOT NULL CHECK (tokens >= 0),
    PRIMARY KEY (scope, scope_id, user_id, hour)
);

CREATE INDEX token_usage_by_hour ON token_usage (hour);
