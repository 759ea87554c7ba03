-- Everything the migration runner needs before the first migration: the schema and its own ledger.
CREATE SCHEMA IF NOT EXISTS komoju;

CREATE TABLE IF NOT EXISTS komoju.schema_migration (
    version    integer     PRIMARY KEY,
    name       text        NOT NULL,
    checksum   text        NOT NULL,   -- sha256 of the file as applied
    applied_at timestamptz NOT NULL DEFAULT now()
);
