-- 6: generated replies, so their buttons (Stop, Regenerate, Continue) and Discord replies to
-- them work after a restart. A reply is keyed by what asked for it (the slash command's
-- interaction id, or the member's message id); message_id is the bot's message showing it.
-- finish_reason is NULL while the reply is being written. turn_id is the conversation turn a
-- /chat reply is, revised when the reply is regenerated or continued.

CREATE TABLE replies (
    id INTEGER PRIMARY KEY,
    channel_id INTEGER NOT NULL,
    requester_id INTEGER NOT NULL,
    message_id INTEGER,
    kind TEXT NOT NULL,
    request TEXT NOT NULL,
    header TEXT NOT NULL,
    text TEXT NOT NULL,
    generated_tokens INTEGER NOT NULL,
    finish_reason TEXT,
    turn_id INTEGER,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);

CREATE INDEX replies_by_message ON replies (message_id);
