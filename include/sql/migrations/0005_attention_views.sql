-- 0005: what needs an operator's attention, as the KOMOJU page shows it, and which run recorded a final failure.

-- The DAG run that gave the order up (the KOMOJU page shows a run's final failures).
ALTER TABLE komoju.final_failure ADD COLUMN run_id text;

-- Orders the jobs gave up on and that are still in that state: to be settled by hand in KOMOJU's dashboard. The
-- order's status is still the failure's, for the same payment id (a corrected row starts afresh). One row per
-- order and job: its latest final failure.
CREATE VIEW komoju.orders_to_settle AS
SELECT DISTINCT ON (f.job, f.site_id, f.order_no)
       f.site_id, f.job, f.order_no, f.status, f.reason, f.amount, f.currency, f.recorded_at, f.notification_id
FROM komoju.final_failure AS f
JOIN komoju.orders AS o ON o.site_id = f.site_id AND o.order_no = f.order_no
WHERE f.status = CASE f.job WHEN 'cancel' THEN o.komoju_cancel_status ELSE o.komoju_refund_status END
  AND f.komoju_payment_id IS NOT DISTINCT FROM o.komoju_payment_id
ORDER BY f.job, f.site_id, f.order_no, f.recorded_at DESC, f.failure_id DESC;

-- Orders KOMOJU accepted but has not completed (Pending): their open attempt, since when, and the link a cash
-- payment's customer must visit.
CREATE VIEW komoju.orders_pending AS
SELECT a.site_id, a.job, a.order_no, a.accepted_at, a.redirect_url,
       CASE a.job WHEN 'cancel' THEN o.komoju_cancel_response ELSE o.komoju_refund_response END AS response,
       o.total_gross_price AS amount, o.currency
FROM komoju.attempt AS a
JOIN komoju.orders AS o ON o.site_id = a.site_id AND o.order_no = a.order_no
WHERE a.finished_at IS NULL AND a.accepted_at IS NOT NULL;
