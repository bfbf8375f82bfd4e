-- 3: story mode. One open story per channel; turns are numbered per story (seq) inside
-- the write transaction, so concurrent additions are ordered and none is lost. Undone
-- turns are kept, marked, for the record.

CREATE TABLE stories (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    guild_id INTEGER,
    channel_id INTEGER NOT NULL,
    starter_id INTEGER NOT NULL,
    premise TEXT NOT NULL,
    turn_mode TEXT NOT NULL CHECK (turn_mode IN ('free', 'round-robin')),
    max_players INTEGER NOT NULL CHECK (max_players >= 1),
    status TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'ended')),
    created_at REAL NOT NULL,
    ended_by INTEGER,
    ended_at REAL
);

CREATE UNIQUE INDEX one_open_story_per_channel ON stories (channel_id) WHERE status = 'open';

CREATE TABLE story_players (
    story_id INTEGER NOT NULL REFERENCES stories (id) ON DELETE CASCADE,
    user_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    joined_at REAL NOT NULL,
    PRIMARY KEY (story_id, user_id)
);

CREATE TABLE story_turns (
    story_id INTEGER NOT NULL REFERENCES stories (id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('opening', 'player', 'bot')),
    author_id INTEGER,  -- NULL: the bot
    author_name TEXT NOT NULL,
    text TEXT NOT NULL,
    created_at REAL NOT NULL,
    undone_by INTEGER,
    undone_at REAL,
    PRIMARY KEY (story_id, seq)
);
