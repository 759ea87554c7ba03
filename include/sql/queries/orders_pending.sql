-- The sites' Pending orders (view komoju.orders_pending), oldest first.
SELECT site_id, job, order_no, accepted_at, response, amount, currency, redirect_url
FROM komoju.orders_pending
WHERE site_id = ANY(%(site_ids)s)
ORDER BY accepted_at, site_id, order_no
LIMIT %(limit)s
