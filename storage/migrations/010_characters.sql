-- 10: characters. A server's (guild_id) named personas that speak through the channel's webhook.
-- name_key is the name casefolded: two characters of a server may not differ only in case.
-- The avatar is either an https URL (avatar_url) or a small PNG (avatar: an uploaded image,
-- re-encoded, or one drawn for the character), stored because Discord's attachment URLs expire.

CREATE TABLE characters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    guild_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    name_key TEXT NOT NULL,
    persona TEXT NOT NULL,
    greeting TEXT NOT NULL DEFAULT '',
    avatar_url TEXT NOT NULL DEFAULT '',
    avatar BLOB,
    created_by INTEGER NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    UNIQUE (guild_id, name_key)
);
