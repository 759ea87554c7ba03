UPDATE komoju.payment_method
SET enabled = %(enabled)s
WHERE site_id = %(site_id)s AND type_slug = %(type_slug)s AND currency = %(currency)s
RETURNING type_slug
