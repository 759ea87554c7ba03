-- Session-level lock: one migration runner at a time per database.
SELECT pg_advisory_lock(%(lock_id)s)
