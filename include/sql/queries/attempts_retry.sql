-- Count one more try of open attempts about to be resent with their own key. %(attempts)s is a JSON array of
-- {order_no, attempt_no}.
UPDATE komoju.attempt AS a
SET tries = a.tries + 1, last_tried_at = now()
FROM jsonb_to_recordset(%(attempts)s::jsonb) AS r (order_no text, attempt_no int)
WHERE a.job = %(job)s AND a.site_id = %(site_id)s AND a.order_no = r.order_no AND a.attempt_no = r.attempt_no
  AND a.finished_at IS NULL
