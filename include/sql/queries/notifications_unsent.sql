-- The site's e-mails prepared but never sent, with their failures, to send again as they were.
SELECT n.notification_id, n.subject, n.message_id,
       f.failure_id, f.order_no, f.amount, f.currency, f.status, f.reason
FROM komoju.notification AS n
JOIN komoju.final_failure AS f ON f.notification_id = n.notification_id
WHERE n.job = %(job)s AND n.site_id = %(site_id)s AND n.sent_at IS NULL
ORDER BY n.notification_id, f.recorded_at, f.failure_id
