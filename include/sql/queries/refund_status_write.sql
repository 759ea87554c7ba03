-- Write the refund job's results to the orders: %(results)s is a JSON array of {order_no, status, response}.
UPDATE komoju.orders AS o
SET komoju_refund_status = r.status,
    komoju_refund_response = r.response
FROM jsonb_to_recordset(%(results)s::jsonb) AS r (order_no text, status text, response text)
WHERE o.site_id = %(site_id)s AND o.order_no = r.order_no
