-- Record orders given up on, to be e-mailed. %(failures)s is a JSON array of
-- {order_no, attempt_no, payment_id, status, reason, amount, currency}, recorded by DAG run %(run_id)s. One already
-- recorded is kept as it was.
INSERT INTO komoju.final_failure
    (job, site_id, order_no, attempt_no, komoju_payment_id, status, reason, amount, currency, run_id)
SELECT %(job)s, %(site_id)s, r.order_no, r.attempt_no, r.payment_id, r.status, r.reason, r.amount, r.currency,
       %(run_id)s
FROM jsonb_to_recordset(%(failures)s::jsonb)
     AS r (order_no text, attempt_no int, payment_id text, status text, reason text, amount numeric, currency text)
ON CONFLICT (job, site_id, order_no, attempt_no) DO NOTHING
