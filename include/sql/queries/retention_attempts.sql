-- One batch of `python -m komoju db clean`: the next %(batch)s attempts in primary-key order after the cursor
-- (after_job, after_site_id, after_order_no, after_attempt_no); those that may go are counted, and deleted when
-- %(delete)s. A scan, not a search: the cursor moves past the rows kept too, so every batch is one short index range.
--
-- An attempt may go only with the whole history of its order and job (never part of it: the jobs count an order's
-- tries and number its next attempt from that history), when:
--   - every attempt of the order is finished, the last before %(cutoff)s (never an open or Pending attempt);
--   - the order is not one the job would work on: no row in komoju.orders matches <job>_eligible.sql (the order is
--     gone, done, Rejected, given up on for its current payment id, or no longer the job's). An eligible order keeps
--     its history, or its tries would start again and a new attempt could take an old attempt's number;
--   - nothing of the order waits to be e-mailed: none of its final failures or customer links is in no e-mail or in
--     an e-mail not sent yet.
WITH scanned AS (
    SELECT a.job, a.site_id, a.order_no, a.attempt_no, a.finished_at
    FROM komoju.attempt AS a
    WHERE (a.job, a.site_id, a.order_no, a.attempt_no)
          > (%(after_job)s::text, %(after_site_id)s::text, %(after_order_no)s::text, %(after_attempt_no)s::int)
    ORDER BY a.job, a.site_id, a.order_no, a.attempt_no
    LIMIT %(batch)s
),
doomed AS (
    SELECT s.job, s.site_id, s.order_no, s.attempt_no
    FROM scanned AS s
    WHERE s.finished_at < %(cutoff)s
      AND NOT EXISTS (
          SELECT 1 FROM komoju.attempt AS b
          WHERE b.job = s.job AND b.site_id = s.site_id AND b.order_no = s.order_no
            AND (b.finished_at IS NULL OR b.finished_at >= %(cutoff)s)
      )
      AND NOT EXISTS (
          SELECT 1 FROM komoju.orders AS o
          WHERE o.site_id = s.site_id AND o.order_no = s.order_no
            AND o.status = 'cancelled' AND o.payment_method = 'KOMOJU_HOSTED_PAGE'
            AND ((s.job = 'cancel' AND o.payment_status = 'not_paid'
                  AND o.komoju_cancel_status IS DISTINCT FROM 'Cancelled'
                  AND o.komoju_cancel_status IS DISTINCT FROM 'Rejected')
              OR (s.job = 'refund' AND o.payment_status = 'paid'
                  AND o.komoju_refund_status IS DISTINCT FROM 'Refunded'
                  AND o.komoju_refund_status IS DISTINCT FROM 'Rejected'))
            AND coalesce(o.komoju_payment_id, '') <> ''
            AND NOT EXISTS (
                SELECT 1 FROM komoju.final_failure AS f
                WHERE f.job = s.job AND f.site_id = o.site_id AND f.order_no = o.order_no
                  AND f.attempt_no > 0 AND f.komoju_payment_id = o.komoju_payment_id
            )
      )
      AND NOT EXISTS (
          SELECT 1 FROM komoju.final_failure AS f
          LEFT JOIN komoju.notification AS n ON n.notification_id = f.notification_id
          WHERE f.job = s.job AND f.site_id = s.site_id AND f.order_no = s.order_no AND n.sent_at IS NULL
      )
      AND NOT EXISTS (
          SELECT 1 FROM komoju.customer_link AS l
          LEFT JOIN komoju.notification AS n ON n.notification_id = l.notification_id
          WHERE l.job = s.job AND l.site_id = s.site_id AND l.order_no = s.order_no AND n.sent_at IS NULL
      )
),
deleted AS (
    DELETE FROM komoju.attempt AS a
    USING doomed AS d
    WHERE %(delete)s
      AND a.job = d.job AND a.site_id = d.site_id AND a.order_no = d.order_no AND a.attempt_no = d.attempt_no
    RETURNING 1
)
SELECT (SELECT count(*) FROM scanned) AS scanned,
       (SELECT count(*) FROM doomed) AS removable,
       (SELECT count(*) FROM deleted) AS removed,
       last.job, last.site_id, last.order_no, last.attempt_no
FROM (SELECT 1) AS one
LEFT JOIN LATERAL (
    SELECT job, site_id, order_no, attempt_no FROM scanned
    ORDER BY job DESC, site_id DESC, order_no DESC, attempt_no DESC
    LIMIT 1
) AS last ON true
