SELECT to_regclass('komoju.schema_migration') IS NOT NULL AS present
