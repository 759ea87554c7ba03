-- Try to take each order's session advisory lock; return the orders now held. A lock held by another run
-- is skipped, not waited for. Released by order_locks_release, or when this connection ends.
SELECT t.order_no
FROM unnest(%(order_nos)s::text[]) AS t (order_no)
WHERE pg_try_advisory_lock(%(lock_class)s, hashtext(%(site_id)s || chr(31) || t.order_no))
