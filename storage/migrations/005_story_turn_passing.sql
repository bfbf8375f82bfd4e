-- 5: round-robin stories keep moving. A skipped turn is recorded (by the player, a moderator,
-- or the turn timer: by_id NULL), and a story may have a turn timer in seconds (0: none).

ALTER TABLE stories ADD COLUMN turn_timeout_s REAL NOT NULL DEFAULT 0;

CREATE TABLE story_skips (
    story_id INTEGER NOT NULL REFERENCES stories (id) ON DELETE CASCADE,
    skipped_id INTEGER NOT NULL,
    by_id INTEGER,
    at REAL NOT NULL
);
