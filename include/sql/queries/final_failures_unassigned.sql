-- Final failures of a site in no e-mail yet.
SELECT failure_id, order_no, amount, currency, status, reason
FROM komoju.final_failure
WHERE job = %(job)s AND site_id = %(site_id)s AND notification_id IS NULL
ORDER BY recorded_at, failure_id
