-- Record new attempts with their idempotency keys, before any of them is sent.
-- %(attempts)s is a JSON array of {order_no, attempt_no, payment_id, idempotency_key}.
INSERT INTO komoju.attempt
    (job, site_id, order_no, attempt_no, komoju_payment_id, idempotency_key, run_id, last_run_id)
SELECT %(job)s, %(site_id)s, r.order_no, r.attempt_no, r.payment_id, r.idempotency_key, %(run_id)s, %(run_id)s
FROM jsonb_to_recordset(%(attempts)s::jsonb) AS r (order_no text, attempt_no int, payment_id text, idempotency_key text)
