-- Change one site's settings (not its KOMOJU connection: secrets stay in Airflow connections).
UPDATE komoju.site
SET name = %(name)s,
    notify_emails = %(notify_emails)s,
    email_locale = %(email_locale)s,
    email_enabled = %(email_enabled)s,
    active = %(active)s
WHERE site_id = %(site_id)s
RETURNING site_id
