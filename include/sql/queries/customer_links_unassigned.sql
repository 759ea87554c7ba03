-- Customer links of a site in no e-mail yet.
SELECT link_id, order_no, amount, currency, redirect_url
FROM komoju.customer_link
WHERE job = %(job)s AND site_id = %(site_id)s AND notification_id IS NULL
ORDER BY recorded_at, link_id
