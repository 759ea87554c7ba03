SELECT type_slug, currency, name_en, name_ja, name_ko, subtypes, enabled, available, position
FROM komoju.payment_method
WHERE site_id = %(site_id)s
ORDER BY position, type_slug, currency
