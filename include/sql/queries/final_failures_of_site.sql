-- The site's final failures, newest first, with when (if ever) they were e-mailed.
SELECT f.job, f.order_no, f.status, f.reason, f.amount, f.currency, f.recorded_at, n.sent_at
FROM komoju.final_failure AS f
LEFT JOIN komoju.notification AS n ON n.notification_id = f.notification_id
WHERE f.site_id = %(site_id)s
  AND (%(job)s::text IS NULL OR f.job = %(job)s)
ORDER BY f.recorded_at DESC, f.failure_id DESC
LIMIT %(limit)s
