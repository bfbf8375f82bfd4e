-- 12: replies being written, so a process that was killed (kill -9, a crash) leaves its users an
-- answer rather than "thinking…" forever. A row is written when a reply begins and deleted when
-- its process ends it (done, failed, or cut off by a clean shutdown, which says so itself); a row
-- still here at start-up was left by a process that died. owner is the process writing it (a
-- random id per process). What edits the reply: a slash command's or a button's interaction
-- (application_id, interaction_token: Discord honours the token for 15 minutes after began_at),
-- or the bot's own message message_id in channel_id. guild_id (NULL in DMs) says which shard's
-- process takes it over; shown is what the reply showed before its new text, kept above the notice.

CREATE TABLE unfinished_replies (
    reply_id INTEGER PRIMARY KEY,
    owner TEXT NOT NULL,
    guild_id INTEGER,
    channel_id INTEGER NOT NULL,
    began_at REAL NOT NULL,
    shown TEXT NOT NULL,
    application_id INTEGER,
    interaction_token TEXT,
    message_id INTEGER
);
