-- The key each post is created with (random, 16 bytes): a creation tried again after its first
-- try's outcome was lost (the database restarted, or the connection was killed, as it committed)
-- finds the post the first try made instead of making a second one. NULL for posts made before.
-- Expand-only: the previous version's queries never notice it.
ALTER TABLE posts ADD COLUMN IF NOT EXISTS create_key BINARY(16) NULL;
CREATE UNIQUE INDEX IF NOT EXISTS posts_create_key ON posts (create_key);
