-- The final failures each of the given e-mails carries.
SELECT notification_id, failure_id, order_no, amount, currency, status, reason
FROM komoju.final_failure
WHERE notification_id = ANY(%(notification_ids)s::bigint[])
ORDER BY notification_id, recorded_at, failure_id
