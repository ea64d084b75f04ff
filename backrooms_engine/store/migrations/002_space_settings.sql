-- Settings a community changes for itself (a Discord server turning streaming off), by space id.
CREATE TABLE space_settings (
    space TEXT NOT NULL,
    key   TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (space, key)
);
