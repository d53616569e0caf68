-- The site's settings: one row.
-- Two statements, each safe to run again should the second one fail.
CREATE TABLE IF NOT EXISTS settings (
  id TINYINT UNSIGNED NOT NULL PRIMARY KEY CHECK (id = 1),
  title VARCHAR(200) NOT NULL,
  description VARCHAR(1000) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

INSERT IGNORE INTO settings (id, title, description)
VALUES (1, 'My onebox site', 'Posts from a onebox server.');
