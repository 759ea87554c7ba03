-- One e-mail preparation per job and site at a time (transaction-scoped).
SELECT pg_advisory_xact_lock(%(lock_class)s, hashtext(%(job)s || chr(31) || %(site_id)s))
