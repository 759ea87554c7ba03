-- One batch of `python -m komoju db clean`: the next %(batch)s e-mails (komoju.notification) by id after
-- %(after_id)s, and what they carry; what may go is counted, and deleted when %(delete)s.
--
-- Only e-mails sent before %(cutoff)s are looked at: a final failure or customer link in no e-mail, or in an e-mail
-- not sent yet, is never removed. Of an old sent e-mail, a final failure or customer link goes once its order no
-- longer needs it: the order is gone or no longer among the job's candidates (done, Rejected, or changed by the
-- storefront). A Failed order still among the candidates keeps its final failures (the one for its current payment id
-- is what keeps the job from trying it again; a bad row's keeps it from being e-mailed again), and a Pending one its
-- customer link. The e-mail itself goes with the last of what it carries (its Message-ID and recipients with it).
WITH scanned AS (
    SELECT n.notification_id, n.sent_at
    FROM komoju.notification AS n
    WHERE n.notification_id > %(after_id)s
    ORDER BY n.notification_id
    LIMIT %(batch)s
),
old AS (
    SELECT notification_id FROM scanned WHERE sent_at < %(cutoff)s
),
failures AS (
    SELECT f.failure_id, f.notification_id,
           NOT EXISTS (
               SELECT 1 FROM komoju.orders AS o
               WHERE o.site_id = f.site_id AND o.order_no = f.order_no
                 AND o.status = 'cancelled' AND o.payment_method = 'KOMOJU_HOSTED_PAGE'
                 AND ((f.job = 'cancel' AND o.payment_status = 'not_paid'
                       AND o.komoju_cancel_status IS DISTINCT FROM 'Cancelled'
                       AND o.komoju_cancel_status IS DISTINCT FROM 'Rejected')
                   OR (f.job = 'refund' AND o.payment_status = 'paid'
                       AND o.komoju_refund_status IS DISTINCT FROM 'Refunded'
                       AND o.komoju_refund_status IS DISTINCT FROM 'Rejected'))
           ) AS may_go
    FROM komoju.final_failure AS f
    JOIN old ON old.notification_id = f.notification_id
),
links AS (
    SELECT l.link_id, l.notification_id,
           NOT EXISTS (
               SELECT 1 FROM komoju.orders AS o
               WHERE o.site_id = l.site_id AND o.order_no = l.order_no
                 AND o.status = 'cancelled' AND o.payment_method = 'KOMOJU_HOSTED_PAGE'
                 AND ((l.job = 'cancel' AND o.payment_status = 'not_paid'
                       AND o.komoju_cancel_status IS DISTINCT FROM 'Cancelled'
                       AND o.komoju_cancel_status IS DISTINCT FROM 'Rejected')
                   OR (l.job = 'refund' AND o.payment_status = 'paid'
                       AND o.komoju_refund_status IS DISTINCT FROM 'Refunded'
                       AND o.komoju_refund_status IS DISTINCT FROM 'Rejected'))
           ) AS may_go
    FROM komoju.customer_link AS l
    JOIN old ON old.notification_id = l.notification_id
),
doomed AS (
    SELECT old.notification_id
    FROM old
    WHERE NOT EXISTS (SELECT 1 FROM failures AS f WHERE f.notification_id = old.notification_id AND NOT f.may_go)
      AND NOT EXISTS (SELECT 1 FROM links AS l WHERE l.notification_id = old.notification_id AND NOT l.may_go)
),
deleted_failures AS (
    DELETE FROM komoju.final_failure AS f
    USING failures AS d
    WHERE %(delete)s AND d.may_go AND f.failure_id = d.failure_id
    RETURNING 1
),
deleted_links AS (
    DELETE FROM komoju.customer_link AS l
    USING links AS d
    WHERE %(delete)s AND d.may_go AND l.link_id = d.link_id
    RETURNING 1
),
deleted AS (
    DELETE FROM komoju.notification AS n
    USING doomed AS d
    WHERE %(delete)s AND n.notification_id = d.notification_id
    RETURNING 1
)
SELECT (SELECT count(*) FROM scanned) AS scanned,
       (SELECT count(*) FROM doomed) AS notifications_removable,
       (SELECT count(*) FROM deleted) AS notifications_removed,
       (SELECT count(*) FROM failures WHERE may_go) AS failures_removable,
       (SELECT count(*) FROM deleted_failures) AS failures_removed,
       (SELECT count(*) FROM links WHERE may_go) AS links_removable,
       (SELECT count(*) FROM deleted_links) AS links_removed,
       (SELECT max(notification_id) FROM scanned) AS last_id
