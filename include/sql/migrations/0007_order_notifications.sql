-- 0007: an order becoming eligible notifies the channel komoju_orders (issue 16: event-driven runs).
--
-- The payload is JSON: {"site_id": "...", "job": "cancel"} or {"job": "refund", ...}. NOTIFY is transactional: it is
-- delivered when the transaction commits (never for one rolled back), and PostgreSQL folds identical notifications of
-- one transaction into one, so a transaction cancelling 1,000 orders of one site sends one notification per job.
-- The asset watchers of the cancel and refund DAGs (komoju.events) LISTEN on this channel in Airflow's triggerer.
--
-- "Eligible" is the job's eligibility predicate of cancel_eligible.sql / refund_eligible.sql on the new row: the
-- partial index orders_cancel_candidates / orders_refund_candidates word for word, a payment id, and not given up on
-- for that payment id (a final failure after a call). It notifies when the row becomes eligible: on INSERT, or on an
-- UPDATE after which the row is eligible while before it was not among the candidates (or had another payment id,
-- which gives the order a new chance). An UPDATE of a row that was eligible already, and the jobs' own writes
-- (Failed, Pending: still candidates; Cancelled, Refunded, Rejected: no longer), notify nothing, so a run never
-- triggers the next one by itself.
CREATE FUNCTION komoju.notify_order_eligible() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'cancelled' AND NEW.payment_status = 'not_paid' AND NEW.payment_method = 'KOMOJU_HOSTED_PAGE'
       AND NEW.komoju_cancel_status IS DISTINCT FROM 'Cancelled' AND NEW.komoju_cancel_status IS DISTINCT FROM 'Rejected'
       AND coalesce(NEW.komoju_payment_id, '') <> ''
    THEN
        IF (TG_OP = 'INSERT'
            OR NOT (OLD.status = 'cancelled' AND OLD.payment_status = 'not_paid'
                    AND OLD.payment_method = 'KOMOJU_HOSTED_PAGE'
                    AND OLD.komoju_cancel_status IS DISTINCT FROM 'Cancelled'
                    AND OLD.komoju_cancel_status IS DISTINCT FROM 'Rejected')
            OR OLD.komoju_payment_id IS DISTINCT FROM NEW.komoju_payment_id)
        THEN
            IF NOT EXISTS (
                SELECT 1 FROM komoju.final_failure AS f
                WHERE f.job = 'cancel' AND f.site_id = NEW.site_id AND f.order_no = NEW.order_no
                  AND f.attempt_no > 0 AND f.komoju_payment_id = NEW.komoju_payment_id
            ) THEN
                PERFORM komoju.notify_order_job(NEW.site_id, 'cancel');
            END IF;
        END IF;
    END IF;
    IF NEW.status = 'cancelled' AND NEW.payment_status = 'paid' AND NEW.payment_method = 'KOMOJU_HOSTED_PAGE'
       AND NEW.komoju_refund_status IS DISTINCT FROM 'Refunded' AND NEW.komoju_refund_status IS DISTINCT FROM 'Rejected'
       AND coalesce(NEW.komoju_payment_id, '') <> ''
    THEN
        IF (TG_OP = 'INSERT'
            OR NOT (OLD.status = 'cancelled' AND OLD.payment_status = 'paid'
                    AND OLD.payment_method = 'KOMOJU_HOSTED_PAGE'
                    AND OLD.komoju_refund_status IS DISTINCT FROM 'Refunded'
                    AND OLD.komoju_refund_status IS DISTINCT FROM 'Rejected')
            OR OLD.komoju_payment_id IS DISTINCT FROM NEW.komoju_payment_id)
        THEN
            IF NOT EXISTS (
                SELECT 1 FROM komoju.final_failure AS f
                WHERE f.job = 'refund' AND f.site_id = NEW.site_id AND f.order_no = NEW.order_no
                  AND f.attempt_no > 0 AND f.komoju_payment_id = NEW.komoju_payment_id
            ) THEN
                PERFORM komoju.notify_order_job(NEW.site_id, 'refund');
            END IF;
        END IF;
    END IF;
    RETURN NULL;
END;
$$;

-- One notification. A payload is limited to 8000 bytes: for a site id too long to fit, the job alone is sent (the
-- run it starts looks at every site anyway), so that no storefront write ever fails because of the notification.
CREATE FUNCTION komoju.notify_order_job(site_id text, job text) RETURNS void
LANGUAGE sql AS $$
    SELECT pg_notify(
        'komoju_orders',
        CASE WHEN octet_length(site_id) <= 4000 THEN json_build_object('site_id', site_id, 'job', job)::text
             ELSE json_build_object('job', job)::text
        END
    );
$$;

-- Fired only for rows that may concern a job (the WHEN clause), and on UPDATE only when a column of the
-- eligibility predicate is in the statement's SET list.
CREATE TRIGGER orders_notify_eligible
    AFTER INSERT OR UPDATE OF status, payment_status, payment_method, komoju_payment_id, komoju_cancel_status,
                              komoju_refund_status
    ON komoju.orders
    FOR EACH ROW
    WHEN (NEW.status = 'cancelled' AND NEW.payment_method = 'KOMOJU_HOSTED_PAGE')
    EXECUTE FUNCTION komoju.notify_order_eligible();

COMMENT ON TRIGGER orders_notify_eligible ON komoju.orders IS
    'NOTIFY komoju_orders {"site_id", "job"} when an order becomes eligible for cancel or refund (issue 16).';
