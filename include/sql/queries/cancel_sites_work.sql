-- Which of the sites %(site_ids)s the cancel job has work for, in one statement (resolve_sites, every run), and how
-- many of each site's orders wait to be settled by hand. Each flag is an EXISTS over a partial index:
--   orders_to_work:     an order cancel_eligible.sql would return (the predicate of orders_cancel_candidates word for
--                       word, a payment id, not given up on for that payment id). A row refused before any call (a bad
--                       row, final failure attempt 0) is work again only once it changed since (its payment id);
--   attempts_to_check:  an open attempt (unknown outcome, or Pending) of an order the job still looks at;
--   emails_to_send:     for a site with e-mails on and contacts, a final failure or customer link in no e-mail yet, or
--                       an e-mail prepared and never sent.
-- to_settle: orders given up on (Rejected, or Failed with a final failure for their current payment id) as their rows
-- say now (the komoju.orders.to_settle gauge). Integrators who replaced komoju.orders (KOMOJU_SQL_DIR) rewrite this
-- file with their cancel_eligible.sql, or set KOMOJU_MAP_ALL_SITES=1.
SELECT s.site_id,
       EXISTS (
           SELECT 1
           FROM komoju.orders AS o
           WHERE o.site_id = s.site_id
             AND o.status = 'cancelled' AND o.payment_status = 'not_paid' AND o.payment_method = 'KOMOJU_HOSTED_PAGE'
             AND o.komoju_cancel_status IS DISTINCT FROM 'Cancelled' AND o.komoju_cancel_status IS DISTINCT FROM 'Rejected'
             AND coalesce(o.komoju_payment_id, '') <> ''
             AND NOT EXISTS (
                 SELECT 1 FROM komoju.final_failure AS f
                 WHERE f.job = 'cancel' AND f.site_id = o.site_id AND f.order_no = o.order_no
                   AND f.komoju_payment_id = o.komoju_payment_id  -- given up on, or refused as a bad row
             )
       ) AS orders_to_work,
       EXISTS (
           SELECT 1
           FROM komoju.attempt AS a
           JOIN komoju.orders AS o ON o.site_id = a.site_id AND o.order_no = a.order_no
           WHERE a.job = 'cancel' AND a.site_id = s.site_id AND a.finished_at IS NULL
             AND o.status = 'cancelled' AND o.payment_status = 'not_paid' AND o.payment_method = 'KOMOJU_HOSTED_PAGE'
             AND o.komoju_cancel_status IS DISTINCT FROM 'Cancelled' AND o.komoju_cancel_status IS DISTINCT FROM 'Rejected'
       ) AS attempts_to_check,
       s.email_enabled AND s.notify_emails <> '{}' AND (
           EXISTS (SELECT 1 FROM komoju.final_failure AS f
                   WHERE f.job = 'cancel' AND f.site_id = s.site_id AND f.notification_id IS NULL)
           OR EXISTS (SELECT 1 FROM komoju.customer_link AS l
                      WHERE l.job = 'cancel' AND l.site_id = s.site_id AND l.notification_id IS NULL)
           OR EXISTS (SELECT 1 FROM komoju.notification AS n
                      WHERE n.job = 'cancel' AND n.site_id = s.site_id AND n.sent_at IS NULL)
       ) AS emails_to_send,
       (
           SELECT count(*)
           FROM komoju.orders AS o
           WHERE o.site_id = s.site_id AND o.komoju_cancel_status IN ('Rejected', 'Failed')
             AND (o.komoju_cancel_status = 'Rejected' OR EXISTS (
                 SELECT 1 FROM komoju.final_failure AS f
                 WHERE f.job = 'cancel' AND f.site_id = o.site_id AND f.order_no = o.order_no
                   AND f.komoju_payment_id IS NOT DISTINCT FROM o.komoju_payment_id
             ))
       ) AS to_settle
FROM komoju.site AS s
WHERE s.site_id = ANY(%(site_ids)s::text[])
ORDER BY s.site_id
