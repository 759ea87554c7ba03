-- Links a customer must visit (a cash payment's refund), recorded once per attempt to be e-mailed once.
-- %(links)s is a JSON array of {order_no, attempt_no, payment_id, redirect_url, amount, currency}.
INSERT INTO komoju.customer_link (job, site_id, order_no, attempt_no, komoju_payment_id, redirect_url, amount, currency)
SELECT %(job)s, %(site_id)s, l.order_no, l.attempt_no, l.payment_id, l.redirect_url, l.amount, l.currency
FROM jsonb_to_recordset(%(links)s::jsonb)
     AS l (order_no text, attempt_no int, payment_id text, redirect_url text, amount numeric, currency text)
ON CONFLICT (job, site_id, order_no, attempt_no) DO NOTHING
