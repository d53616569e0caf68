-- An expand-only migration for the VM suite's "app reload with a migration" check, in the binary
-- only when onebox-app is built with `--features expand-test-migration` (never in the image): a
-- new table and a new nullable column, which the previous version's queries never notice.
CREATE TABLE IF NOT EXISTS expand_test (
  id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  note VARCHAR(200) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

ALTER TABLE posts ADD COLUMN IF NOT EXISTS expand_test_note VARCHAR(200) NULL;
