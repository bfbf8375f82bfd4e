-- 7: a story's own turn length: the most tokens the bot writes for each of its turns.

ALTER TABLE stories ADD COLUMN turn_tokens INTEGER NOT NULL DEFAULT 120;
