-- Final failures of a site not yet e-mailed: never put in an e-mail, or put in one that was not sent.
SELECT failure_id, order_no, amount, currency, status, reason
FROM komoju.final_failure
WHERE job = %(job)s AND site_id = %(site_id)s
  AND (notification_id IS NULL OR notification_id = ANY(%(unsent_ids)s::bigint[]))
ORDER BY recorded_at, failure_id
