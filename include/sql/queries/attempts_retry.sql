-- One more try of open attempts about to be resent with their own key: counted once per DAG run (a task retry in
-- the same run resends without counting). No answer to the resend is known yet (http_status NULL) until its result
-- is written. %(attempts)s is a JSON array of {order_no, attempt_no}.
UPDATE komoju.attempt AS a
SET tries = a.tries + CASE WHEN a.last_run_id IS DISTINCT FROM %(run_id)s THEN 1 ELSE 0 END,
    last_run_id = %(run_id)s,
    last_tried_at = now(),
    http_status = NULL,
    error_code = NULL
FROM jsonb_to_recordset(%(attempts)s::jsonb) AS r (order_no text, attempt_no int)
WHERE a.job = %(job)s AND a.site_id = %(site_id)s AND a.order_no = r.order_no AND a.attempt_no = r.attempt_no
  AND a.finished_at IS NULL
