-- Put one method at %(position)s (1-based) in its site's order, renumbering the site's methods 1..n.
WITH ordered AS (
    SELECT type_slug, currency,
           row_number() OVER (ORDER BY position, type_slug, currency) AS rank
    FROM komoju.payment_method
    WHERE site_id = %(site_id)s AND NOT (type_slug = %(type_slug)s AND currency = %(currency)s)
),
target AS (
    SELECT type_slug, currency FROM komoju.payment_method
    WHERE site_id = %(site_id)s AND type_slug = %(type_slug)s AND currency = %(currency)s
),
renumbered AS (
    SELECT type_slug, currency, rank + (rank >= %(position)s)::int AS new_position FROM ordered
    UNION ALL
    SELECT type_slug, currency,
           least(greatest(%(position)s, 1), (SELECT count(*) FROM ordered) + 1) FROM target
)
UPDATE komoju.payment_method AS pm
SET position = r.new_position
FROM renumbered AS r
WHERE pm.site_id = %(site_id)s AND pm.type_slug = r.type_slug AND pm.currency = r.currency
  AND EXISTS (SELECT 1 FROM target)
RETURNING pm.type_slug, pm.currency, pm.position
