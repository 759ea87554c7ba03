-- Close attempts KOMOJU answered for good, or that are replaced by a new attempt (no new answer: the last one the
-- key got stays recorded). %(results)s is a JSON array of {order_no, attempt_no, outcome, http_status, error_code,
-- response}.
UPDATE komoju.attempt AS a
SET finished_at = now(),
    outcome = r.outcome,
    http_status = coalesce(r.http_status, a.http_status),
    error_code = coalesce(r.error_code, a.error_code),
    response = r.response
FROM jsonb_to_recordset(%(results)s::jsonb)
     AS r (order_no text, attempt_no int, outcome text, http_status int, error_code text, response text)
WHERE a.job = %(job)s AND a.site_id = %(site_id)s AND a.order_no = r.order_no AND a.attempt_no = r.attempt_no
  AND a.finished_at IS NULL
