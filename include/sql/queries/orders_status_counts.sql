-- Per site and job, how many orders are in each KOMOJU status (NULL: not handled yet). Orders without a KOMOJU
-- payment id are not the jobs' to handle: they are counted apart, as 'no payment id'.
SELECT site_id,
       'cancel' AS job,
       CASE WHEN coalesce(komoju_payment_id, '') = '' THEN 'no payment id' ELSE komoju_cancel_status END AS status,
       count(*) AS orders
FROM komoju.orders
WHERE site_id = ANY(%(site_ids)s)
  AND status = 'cancelled' AND payment_status = 'not_paid' AND payment_method = 'KOMOJU_HOSTED_PAGE'
GROUP BY 1, 3
UNION ALL
SELECT site_id,
       'refund',
       CASE WHEN coalesce(komoju_payment_id, '') = '' THEN 'no payment id' ELSE komoju_refund_status END,
       count(*)
FROM komoju.orders
WHERE site_id = ANY(%(site_ids)s)
  AND status = 'cancelled' AND payment_status = 'paid' AND payment_method = 'KOMOJU_HOSTED_PAGE'
GROUP BY 1, 3
ORDER BY 1, 2, 3 NULLS FIRST
