-- The instant before which `python -m komoju db clean --older-than DAYS` removes bookkeeping (the database's clock).
SELECT now() - make_interval(days => %(older_than_days)s)
