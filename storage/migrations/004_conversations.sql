-- 4: /chat conversations. A conversation is a channel's or thread's (channel_id) and, in a
-- channel, one member's (owner_id; 0 in a thread, where everyone shares one). Turns come in
-- exchanges (a member's message and the reply to it) written together; asker_id says whose
-- exchange a turn belongs to, so a member can take back their own.

CREATE TABLE conversation_turns (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    channel_id INTEGER NOT NULL,
    owner_id INTEGER NOT NULL,
    asker_id INTEGER NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
    author TEXT,
    text TEXT NOT NULL,
    created_at REAL NOT NULL
);

CREATE INDEX conversation_turns_by_conversation ON conversation_turns (channel_id, owner_id, id);
