-- 0003: who changed which setting, when, through what, from what to what.
--
-- Every change made outside a DAG run (the KOMOJU page in Airflow, `python -m komoju`) writes one row per
-- changed field in the same transaction as the change itself. Rows are never updated; site_id is not a foreign
-- key, so the trail outlives a deleted site.

CREATE TABLE komoju.setting_change (
    change_id   bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    changed_at  timestamptz NOT NULL DEFAULT now(),
    changed_by  text        NOT NULL CHECK (changed_by <> ''),  -- the Airflow user, or the OS user of the CLI
    channel     text        NOT NULL CHECK (channel IN ('page', 'cli')),
    action      text        NOT NULL,                           -- e.g. komoju.payment_method.toggle
    site_id     text        NOT NULL,
    subject     text,                                           -- the payment method ('konbini JPY'); null: the site
    field       text        NOT NULL,                           -- e.g. enabled, position, notify_emails
    old_value   jsonb,
    new_value   jsonb
);

CREATE INDEX setting_change_site_recent ON komoju.setting_change (site_id, changed_at DESC, change_id DESC);

COMMENT ON TABLE komoju.setting_change IS
    'Audit trail of changes to sites and payment methods made through the KOMOJU page or the komoju CLI.';
