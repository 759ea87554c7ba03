-- Orders of one site the cancel job must work on (SPEC §4.2), in keyset order, with their attempt history.
-- Either a batch after %(after)s (NULL: from the start; order_nos NULL), or the given order_nos re-read after
-- locking them. The predicate on komoju.orders repeats the partial index orders_cancel_candidates word for word.
-- An order given up on (a final failure after a call) is out for that payment id; one refused before any call
-- (a bad row, attempt_no 0) stays in, so a corrected row is processed. tried_this_run: this DAG run (%(run_id)s)
-- already tried the order, in an earlier try of its task. open_accepted_at: KOMOJU accepted the open attempt but the
-- payment did not show it done (Pending); open_http_status: the last answer to the open attempt's key (NULL: none).
SELECT o.order_no,
       o.komoju_payment_id,
       o.total_gross_price,
       o.currency,
       used.last_attempt_no,
       used.tries,
       open.attempt_no         AS open_attempt_no,
       open.idempotency_key    AS open_idempotency_key,
       open.komoju_payment_id  AS open_payment_id,
       open.started_at         AS open_started_at,
       open.accepted_at        AS open_accepted_at,
       open.http_status        AS open_http_status,
       used.tried_this_run
FROM komoju.orders AS o
LEFT JOIN LATERAL (
    SELECT coalesce(max(a.attempt_no), 0) AS last_attempt_no,
           coalesce(sum(a.tries) FILTER (WHERE a.komoju_payment_id = o.komoju_payment_id), 0)::int AS tries,
           coalesce(bool_or(a.last_run_id = %(run_id)s), false) AS tried_this_run
    FROM komoju.attempt AS a
    WHERE a.job = 'cancel' AND a.site_id = o.site_id AND a.order_no = o.order_no
) AS used ON true
LEFT JOIN komoju.attempt AS open
       ON open.job = 'cancel' AND open.site_id = o.site_id AND open.order_no = o.order_no
      AND open.finished_at IS NULL
WHERE o.site_id = %(site_id)s
  AND o.status = 'cancelled' AND o.payment_status = 'not_paid' AND o.payment_method = 'KOMOJU_HOSTED_PAGE'
  AND o.komoju_cancel_status IS DISTINCT FROM 'Cancelled' AND o.komoju_cancel_status IS DISTINCT FROM 'Rejected'
  AND coalesce(o.komoju_payment_id, '') <> ''
  AND NOT EXISTS (
      SELECT 1 FROM komoju.final_failure AS f
      WHERE f.job = 'cancel' AND f.site_id = o.site_id AND f.order_no = o.order_no
        AND f.attempt_no > 0 AND f.komoju_payment_id = o.komoju_payment_id
  )
  AND (%(after)s::text IS NULL OR o.order_no > %(after)s::text)
  AND (%(order_nos)s::text[] IS NULL OR o.order_no = ANY(%(order_nos)s::text[]))
ORDER BY o.order_no
LIMIT %(limit)s
