-- The sites' orders to settle by hand (view komoju.orders_to_settle), newest first, with when they were e-mailed.
SELECT s.site_id, s.job, s.order_no, s.status, s.reason, s.amount, s.currency, s.recorded_at, n.sent_at
FROM komoju.orders_to_settle AS s
LEFT JOIN komoju.notification AS n ON n.notification_id = s.notification_id
WHERE s.site_id = ANY(%(site_ids)s)
ORDER BY s.recorded_at DESC, s.site_id, s.order_no
LIMIT %(limit)s
