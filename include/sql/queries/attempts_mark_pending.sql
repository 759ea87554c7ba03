-- Open attempts KOMOJU accepted without the payment showing them done: they stay open, marked Pending (accepted_at
-- set at the first such answer), and are only checked by GET from now on. %(results)s is a JSON array of
-- {order_no, attempt_no, http_status, response, redirect_url}.
UPDATE komoju.attempt AS a
SET accepted_at = coalesce(a.accepted_at, now()),
    http_status = coalesce(r.http_status, a.http_status),
    response = r.response,
    redirect_url = coalesce(r.redirect_url, a.redirect_url),
    last_error = NULL
FROM jsonb_to_recordset(%(results)s::jsonb)
     AS r (order_no text, attempt_no int, http_status int, response text, redirect_url text)
WHERE a.job = %(job)s AND a.site_id = %(site_id)s AND a.order_no = r.order_no AND a.attempt_no = r.attempt_no
  AND a.finished_at IS NULL
