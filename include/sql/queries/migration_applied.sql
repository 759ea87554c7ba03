SELECT version, name, checksum, applied_at
FROM komoju.schema_migration
ORDER BY version
