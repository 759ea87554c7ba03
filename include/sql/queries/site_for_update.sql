-- One site's settings, locked until the transaction ends (a change reads the old values under this lock).
SELECT site_id, name, komoju_conn_id, notify_emails, email_locale, email_enabled, active
FROM komoju.site
WHERE site_id = %(site_id)s
FOR UPDATE
