-- Per job, how many of the site's orders are in each KOMOJU status (NULL: not handled yet).
SELECT 'cancel' AS job, komoju_cancel_status AS komoju_status, count(*) AS orders
FROM komoju.orders
WHERE site_id = %(site_id)s
  AND status = 'cancelled' AND payment_status = 'not_paid' AND payment_method = 'KOMOJU_HOSTED_PAGE'
GROUP BY komoju_cancel_status
UNION ALL
SELECT 'refund', komoju_refund_status, count(*)
FROM komoju.orders
WHERE site_id = %(site_id)s
  AND status = 'cancelled' AND payment_status = 'paid' AND payment_method = 'KOMOJU_HOSTED_PAGE'
GROUP BY komoju_refund_status
ORDER BY 1, 2 NULLS FIRST
