-- 0004: Pending, and the links cash-payment customers must visit before KOMOJU refunds them.
--
-- KOMOJU may accept a cancel or refund without doing it at once (a 202, a refund still processing, a cash
-- payment's refund waiting for the customer's bank account). Such an order is 'Pending': KOMOJU has it, the
-- payment does not show it done. Its attempt stays open with accepted_at set; later runs only GET the payment.

ALTER TABLE komoju.orders
    DROP CONSTRAINT orders_komoju_cancel_status_check,
    ADD CONSTRAINT orders_komoju_cancel_status_check
        CHECK (komoju_cancel_status IN ('Cancelled', 'Pending', 'Rejected', 'Failed')),
    DROP CONSTRAINT orders_komoju_refund_status_check,
    ADD CONSTRAINT orders_komoju_refund_status_check
        CHECK (komoju_refund_status IN ('Refunded', 'Pending', 'Rejected', 'Failed'));

-- accepted_at: when KOMOJU accepted this attempt's request without the payment showing it done (while the attempt
-- is open it is never POSTed again, only checked by GET until done or past the pending limit; kept once closed). redirect_url: the link a cash
-- payment's customer must visit to give a bank account. http_status (already there) of an open attempt: the last
-- answer to its key; NULL means none arrived (a lost connection or a crash), so resending the key is safe.
ALTER TABLE komoju.attempt
    ADD COLUMN accepted_at  timestamptz,
    ADD COLUMN redirect_url text;

-- A link to forward to a customer, e-mailed once to the site's contacts (as final failures are).
CREATE TABLE komoju.customer_link (
    link_id           bigserial   PRIMARY KEY,
    job               text        NOT NULL CHECK (job IN ('cancel', 'refund')),
    site_id           text        NOT NULL,
    order_no          text        NOT NULL,
    attempt_no        integer     NOT NULL CHECK (attempt_no >= 1),
    komoju_payment_id text        NOT NULL,
    redirect_url      text        NOT NULL,
    amount            numeric(18, 4),
    currency          text,
    recorded_at       timestamptz NOT NULL DEFAULT now(),
    notification_id   bigint      REFERENCES komoju.notification,
    UNIQUE (job, site_id, order_no, attempt_no)
);

CREATE INDEX customer_link_unnotified ON komoju.customer_link (job, site_id) WHERE notification_id IS NULL;

COMMENT ON TABLE komoju.customer_link IS
    'Links KOMOJU gave for a customer to visit (a cash payment''s refund: where to give a bank account), e-mailed once.';
