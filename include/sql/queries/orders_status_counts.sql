-- Per job, how many of the site's orders are in each KOMOJU status (NULL: not handled yet). Orders without a
-- KOMOJU payment id are not the jobs' to handle: they are counted apart, as 'no payment id'.
SELECT 'cancel' AS job,
       CASE WHEN coalesce(komoju_payment_id, '') = '' THEN 'no payment id' ELSE komoju_cancel_status END,
       count(*) AS orders
FROM komoju.orders
WHERE site_id = %(site_id)s
  AND status = 'cancelled' AND payment_status = 'not_paid' AND payment_method = 'KOMOJU_HOSTED_PAGE'
GROUP BY 2
UNION ALL
SELECT 'refund',
       CASE WHEN coalesce(komoju_payment_id, '') = '' THEN 'no payment id' ELSE komoju_refund_status END,
       count(*)
FROM komoju.orders
WHERE site_id = %(site_id)s
  AND status = 'cancelled' AND payment_status = 'paid' AND payment_method = 'KOMOJU_HOSTED_PAGE'
GROUP BY 2
ORDER BY 1, 2 NULLS FIRST
