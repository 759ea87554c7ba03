-- One payment method's toggle and position, locked with every method of its site until the transaction ends
-- (a move renumbers them all). No row: the site has no such method.
WITH site_methods AS (
    SELECT type_slug, currency, enabled, position
    FROM komoju.payment_method
    WHERE site_id = %(site_id)s
    FOR UPDATE
)
SELECT enabled, position FROM site_methods WHERE type_slug = %(type_slug)s AND currency = %(currency)s
