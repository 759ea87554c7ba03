-- The e-mails one DAG run of a job prepared, per site: sent or not, and to how many addresses.
SELECT site_id, sent_at IS NOT NULL AS sent, cardinality(recipients)
FROM komoju.notification
WHERE job = %(job)s AND run_id = %(run_id)s
ORDER BY site_id, notification_id
