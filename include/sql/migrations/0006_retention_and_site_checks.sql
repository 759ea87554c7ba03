-- 0006: idle sites cost nothing, bookkeeping can be cleaned by age (issue 15).
--
-- komoju.site_check: when each job last checked each site, and whether it found work. resolve_sites writes one
-- row per scoped site and job in one statement; a site with nothing to do gets no task of its own, and this row
-- is what says it was looked at ("last checked ... nothing to do"). One row per site and job: it never grows.
CREATE TABLE komoju.site_check (
    site_id    text        NOT NULL,
    job        text        NOT NULL CHECK (job IN ('cancel', 'refund')),
    checked_at timestamptz NOT NULL DEFAULT now(),
    had_work   boolean     NOT NULL,
    run_id     text,
    PRIMARY KEY (site_id, job)
);

COMMENT ON TABLE komoju.site_check IS
    'The latest check of each site by the cancel and refund jobs: when, in which DAG run, and whether it had work.';

-- Which sites have e-mails to send again: prepared, never sent (resolve_sites asks this for every site each run).
CREATE INDEX notification_unsent ON komoju.notification (job, site_id) WHERE sent_at IS NULL;

-- Deleting an e-mail (python -m komoju db clean) checks that nothing refers to it any more: without these
-- indexes each deleted komoju.notification row would scan both tables.
CREATE INDEX final_failure_notification ON komoju.final_failure (notification_id) WHERE notification_id IS NOT NULL;
CREATE INDEX customer_link_notification ON komoju.customer_link (notification_id) WHERE notification_id IS NOT NULL;

-- The orders waiting to be settled by hand (Rejected, or Failed for good), counted per site for the
-- komoju.orders.to_settle gauge each run: only failed orders are in these indexes, never the mass of done ones.
CREATE INDEX orders_cancel_unsettled ON komoju.orders (site_id)
    WHERE komoju_cancel_status IN ('Rejected', 'Failed');

CREATE INDEX orders_refund_unsettled ON komoju.orders (site_id)
    WHERE komoju_refund_status IN ('Rejected', 'Failed');
