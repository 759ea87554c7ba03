-- 0001: the komoju schema of SPEC §6 (the integrators' interface) and the project's own bookkeeping.
--
-- Integrators fill komoju.site and komoju.orders; the jobs read them and write the komoju_* status
-- columns. Everything else (attempts, idempotency keys, leases, final failures, notifications) is the
-- project's own and may change shape in later migrations.

-- ---------------------------------------------------------------------------------------------------
-- Interface tables (SPEC §6)
-- ---------------------------------------------------------------------------------------------------

CREATE TABLE komoju.site (
    site_id        text    PRIMARY KEY CHECK (site_id <> ''),
    name           text,
    komoju_conn_id text    NOT NULL DEFAULT 'komoju_default' CHECK (komoju_conn_id <> ''),
    notify_emails  text[]  NOT NULL DEFAULT '{}',
    email_locale   text    NOT NULL DEFAULT 'ja' CHECK (email_locale IN ('ja', 'en')),
    email_enabled  boolean NOT NULL DEFAULT true,
    active         boolean NOT NULL DEFAULT true
);

COMMENT ON TABLE komoju.site IS
    'One storefront site: which Airflow connection holds its KOMOJU secret key, who receives its failure e-mails.';

CREATE TABLE komoju.payment_method (
    site_id    text    NOT NULL REFERENCES komoju.site ON DELETE CASCADE,
    type_slug  text    NOT NULL CHECK (type_slug <> ''),
    currency   text    NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    name_en    text,
    name_ja    text,
    name_ko    text,
    subtypes   text[]  NOT NULL DEFAULT '{}',
    details    jsonb   NOT NULL DEFAULT '{}',   -- the rest of KOMOJU's item (fees, secure_token_supported, ...)
    enabled    boolean NOT NULL,                -- the merchant's toggle; never changed by the sync
    available  boolean NOT NULL,                -- returned by KOMOJU at the last sync
    position   integer NOT NULL,                -- display order within the site
    synced_at  timestamptz,
    PRIMARY KEY (site_id, type_slug, currency)
);

CREATE INDEX payment_method_site_position ON komoju.payment_method (site_id, position);

CREATE TABLE komoju.orders (
    site_id                text NOT NULL REFERENCES komoju.site,
    order_no               text NOT NULL,
    status                 text NOT NULL CHECK (status IN
                               ('created', 'new', 'open', 'completed', 'cancelled', 'replaced', 'failed')),
    payment_status         text NOT NULL CHECK (payment_status IN ('not_paid', 'part_paid', 'paid')),
    payment_method         text,
    komoju_payment_id      text,
    total_gross_price      numeric(18, 4),
    currency               text,
    komoju_cancel_status   text CHECK (komoju_cancel_status IN ('Cancelled', 'Rejected', 'Failed')),
    komoju_cancel_response text,
    komoju_refund_status   text CHECK (komoju_refund_status IN ('Refunded', 'Rejected', 'Failed')),
    komoju_refund_response text,
    PRIMARY KEY (site_id, order_no)
);

-- The jobs' candidate scans (SPEC §4.2, §4.3), in keyset order per site. The queries repeat these
-- predicates word for word so the planner can use the partial indexes.
CREATE INDEX orders_cancel_candidates ON komoju.orders (site_id, order_no)
    WHERE status = 'cancelled' AND payment_status = 'not_paid' AND payment_method = 'KOMOJU_HOSTED_PAGE'
      AND komoju_cancel_status IS DISTINCT FROM 'Cancelled' AND komoju_cancel_status IS DISTINCT FROM 'Rejected';

CREATE INDEX orders_refund_candidates ON komoju.orders (site_id, order_no)
    WHERE status = 'cancelled' AND payment_status = 'paid' AND payment_method = 'KOMOJU_HOSTED_PAGE'
      AND komoju_refund_status IS DISTINCT FROM 'Refunded' AND komoju_refund_status IS DISTINCT FROM 'Rejected';

-- ---------------------------------------------------------------------------------------------------
-- Bookkeeping (the project's own)
-- ---------------------------------------------------------------------------------------------------
-- No foreign keys to komoju.orders on purpose: an order sync that deletes and re-inserts rows must not
-- erase the record of what was already sent to KOMOJU.
--
-- Two runs never work on the same order at once: a worker holds a session-level advisory lock per order
-- (pg_try_advisory_lock) while it works on it, so a worker that dies releases its orders with its
-- connection, and the next run can finish them at once.

-- One idempotency key's life for one order: the call (and its retries) under that key. The row, with its key,
-- is committed before the POST is sent; any resend of the same attempt (in the run, on a task retry, after a
-- crash, or in the next run after a transient failure) reuses the key. An attempt stays open (finished_at
-- NULL) while its outcome is unknown or transient; it is closed once KOMOJU answered for good. tries counts
-- the DAG runs that sent (or were about to send) it, at most one per run however often Airflow retries the
-- task: the order's tries for its current payment, summed over its attempts, are what max_attempts limits. An open attempt older than 23 h is settled by GET before any resend.
CREATE TABLE komoju.attempt (
    job               text        NOT NULL CHECK (job IN ('cancel', 'refund')),
    site_id           text        NOT NULL,
    order_no          text        NOT NULL,
    attempt_no        integer     NOT NULL CHECK (attempt_no >= 1),
    komoju_payment_id text        NOT NULL,
    idempotency_key   text        NOT NULL UNIQUE CHECK (idempotency_key ~ '^[!-~]{1,100}$'),
    run_id            text,
    started_at        timestamptz NOT NULL DEFAULT now(),  -- first use of the key (KOMOJU keeps keys 24 h)
    tries             integer     NOT NULL DEFAULT 1 CHECK (tries >= 1),
    last_tried_at     timestamptz NOT NULL DEFAULT now(),
    last_run_id       text,                                 -- the DAG run of the last try (one try per run)
    last_error        text,                                 -- the transient failure of the last try, while open
    finished_at       timestamptz,
    outcome           text        CHECK (outcome IN ('succeeded', 'rejected', 'failed', 'transient')),
    http_status       integer,
    error_code        text,
    response          text,
    PRIMARY KEY (job, site_id, order_no, attempt_no),
    CHECK ((finished_at IS NULL) = (outcome IS NULL))
);

-- At most one attempt per order and job is open (possibly sent, result unknown) at any time.
CREATE UNIQUE INDEX attempt_one_open ON komoju.attempt (job, site_id, order_no) WHERE finished_at IS NULL;

-- One e-mail to a site's contacts, carrying a fixed set of final failures and a fixed Message-ID. Created
-- before sending; sent_at is set once the EmailOperator succeeded. One that was not sent is sent again, the
-- same (same failures, same Message-ID), by a later run.
CREATE TABLE komoju.notification (
    notification_id bigserial   PRIMARY KEY,
    job             text        NOT NULL CHECK (job IN ('cancel', 'refund')),
    site_id         text        NOT NULL,
    recipients      text[]      NOT NULL,
    subject         text        NOT NULL,
    message_id      text        NOT NULL UNIQUE,
    run_id          text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz
);

-- An order the job gave up on (Rejected, or Failed for good): recorded first, then e-mailed once.
-- attempt_no 0 means the order was refused before any call (a bad row): such an order stays eligible, so a
-- corrected row is processed. Other failures end the order's processing for that payment id; an order whose
-- komoju_payment_id is changed afterwards starts afresh.
CREATE TABLE komoju.final_failure (
    failure_id      bigserial   PRIMARY KEY,
    job             text        NOT NULL CHECK (job IN ('cancel', 'refund')),
    site_id         text        NOT NULL,
    order_no        text        NOT NULL,
    attempt_no      integer     NOT NULL DEFAULT 0 CHECK (attempt_no >= 0),
    komoju_payment_id text,
    status          text        NOT NULL CHECK (status IN ('Rejected', 'Failed')),
    reason          text        NOT NULL,
    amount          numeric(18, 4),
    currency        text,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    notification_id bigint      REFERENCES komoju.notification,
    UNIQUE (job, site_id, order_no, attempt_no)
);

CREATE INDEX final_failure_unnotified ON komoju.final_failure (job, site_id) WHERE notification_id IS NULL;
