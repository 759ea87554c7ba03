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

-- One call (and its retries) to KOMOJU for one order. The row, with its idempotency key, is committed
-- before the POST is sent; any retry of the same attempt (in the run, after a task retry, after a crash)
-- reuses the key. An attempt with finished_at NULL was possibly sent: it is settled before a new one.
CREATE TABLE komoju.attempt (
    job               text        NOT NULL CHECK (job IN ('cancel', 'refund')),
    site_id           text        NOT NULL,
    order_no          text        NOT NULL,
    attempt_no        integer     NOT NULL CHECK (attempt_no >= 1),
    komoju_payment_id text        NOT NULL,
    idempotency_key   text        NOT NULL UNIQUE CHECK (idempotency_key ~ '^[!-~]{1,100}$'),
    run_id            text,
    started_at        timestamptz NOT NULL DEFAULT now(),
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

-- One e-mail to a site's contacts. Created before sending; sent_at is set once the EmailOperator
-- succeeded. A notification never sent releases its failures to the next one.
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
-- attempt_no 0 means the order failed before any call (a bad row).
CREATE TABLE komoju.final_failure (
    failure_id      bigserial   PRIMARY KEY,
    job             text        NOT NULL CHECK (job IN ('cancel', 'refund')),
    site_id         text        NOT NULL,
    order_no        text        NOT NULL,
    attempt_no      integer     NOT NULL DEFAULT 0 CHECK (attempt_no >= 0),
    status          text        NOT NULL CHECK (status IN ('Rejected', 'Failed')),
    reason          text        NOT NULL,
    amount          numeric(18, 4),
    currency        text,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    notification_id bigint      REFERENCES komoju.notification,
    UNIQUE (job, site_id, order_no, attempt_no)
);

CREATE INDEX final_failure_unnotified ON komoju.final_failure (job, site_id) WHERE notification_id IS NULL;
