-- 11: stories with a cast. A story may name some of the server's characters (story_cast, in the
-- order they speak) and have the narrator with them (narrator 1); cast_turns says who speaks
-- between the players' turns ('none': a story without a cast, the bot continues it as before).
-- A cast member whose character was deleted is marked left_at, and the story goes on without it.
-- A turn spoken by the cast records who spoke (character_id: 0 for the narrator, NULL for a
-- player or the bot) and the webhook message that shows it (message_id), so removing the line
-- can delete that message too.

ALTER TABLE stories ADD COLUMN cast_turns TEXT NOT NULL DEFAULT 'none'
    CHECK (cast_turns IN ('none', 'rotation', 'all'));

ALTER TABLE stories ADD COLUMN narrator INTEGER NOT NULL DEFAULT 0;

ALTER TABLE story_turns ADD COLUMN character_id INTEGER;

ALTER TABLE story_turns ADD COLUMN message_id INTEGER;

CREATE TABLE story_cast (
    story_id INTEGER NOT NULL REFERENCES stories (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    character_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    left_at REAL,
    PRIMARY KEY (story_id, position)
);
