-- The final failures one DAG run of a job recorded, per site.
SELECT site_id, order_no, status, reason, amount, currency
FROM komoju.final_failure
WHERE job = %(job)s AND run_id = %(run_id)s
ORDER BY site_id, recorded_at, failure_id
