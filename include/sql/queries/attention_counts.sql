-- Per site, how many orders are to settle by hand and how many are Pending.
SELECT site_id, sum(to_settle)::int, sum(pending)::int
FROM (
    SELECT site_id, 1 AS to_settle, 0 AS pending FROM komoju.orders_to_settle WHERE site_id = ANY(%(site_ids)s)
    UNION ALL
    SELECT site_id, 0, 1 FROM komoju.orders_pending WHERE site_id = ANY(%(site_ids)s)
) AS attention
GROUP BY site_id
