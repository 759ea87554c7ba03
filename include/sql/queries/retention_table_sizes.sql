-- The bookkeeping tables `python -m komoju db clean` reports on: rows, and size on disk with indexes and TOAST.
-- komoju.setting_change is the audit trail of setting changes: reported, never cleaned.
SELECT 'komoju.attempt', (SELECT count(*) FROM komoju.attempt), pg_total_relation_size('komoju.attempt')
UNION ALL
SELECT 'komoju.final_failure', (SELECT count(*) FROM komoju.final_failure),
       pg_total_relation_size('komoju.final_failure')
UNION ALL
SELECT 'komoju.customer_link', (SELECT count(*) FROM komoju.customer_link),
       pg_total_relation_size('komoju.customer_link')
UNION ALL
SELECT 'komoju.notification', (SELECT count(*) FROM komoju.notification),
       pg_total_relation_size('komoju.notification')
UNION ALL
SELECT 'komoju.setting_change', (SELECT count(*) FROM komoju.setting_change),
       pg_total_relation_size('komoju.setting_change')
