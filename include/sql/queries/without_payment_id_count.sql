-- Orders that look like the job's but have no KOMOJU payment id: not eligible, counted for the run's summary.
SELECT count(*)
FROM komoju.orders
WHERE site_id = %(site_id)s
  AND status = 'cancelled' AND payment_status = %(payment_status)s AND payment_method = 'KOMOJU_HOSTED_PAGE'
  AND coalesce(komoju_payment_id, '') = ''
