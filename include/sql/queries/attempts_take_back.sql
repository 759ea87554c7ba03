-- Take back tries that were never sent (the site stopped first) or were refused before KOMOJU looked at them
-- (401/403): a new attempt is forgotten, a resent one gets its try back. The key itself was never used.
-- A resend that did not count (a task retry within the run that counted) has nothing to take back.
-- %(results)s is a JSON array of {order_no, attempt_no, new, counted}.
WITH r AS (
    SELECT * FROM jsonb_to_recordset(%(results)s::jsonb) AS r (order_no text, attempt_no int, new boolean, counted boolean)
),
forgotten AS (
    DELETE FROM komoju.attempt AS a
    USING r
    WHERE a.job = %(job)s AND a.site_id = %(site_id)s AND a.order_no = r.order_no AND a.attempt_no = r.attempt_no
      AND r.new AND a.finished_at IS NULL AND a.tries = 1
    RETURNING a.order_no
)
UPDATE komoju.attempt AS a
SET tries = a.tries - 1, last_run_id = NULL
FROM r
WHERE a.job = %(job)s AND a.site_id = %(site_id)s AND a.order_no = r.order_no AND a.attempt_no = r.attempt_no
  AND NOT r.new AND r.counted AND a.finished_at IS NULL AND a.tries > 1
