-- The customer links each of the given e-mails carries.
SELECT notification_id, link_id, order_no, amount, currency, redirect_url
FROM komoju.customer_link
WHERE notification_id = ANY(%(notification_ids)s::bigint[])
ORDER BY notification_id, recorded_at, link_id
