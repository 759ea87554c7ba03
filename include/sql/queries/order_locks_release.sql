SELECT count(*) FILTER (WHERE pg_advisory_unlock(%(lock_class)s, hashtext(%(site_id)s || chr(31) || t.order_no)))
FROM unnest(%(order_nos)s::text[]) AS t (order_no)
