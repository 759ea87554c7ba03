SELECT site_id, name, komoju_conn_id, notify_emails, email_locale, email_enabled, active
FROM komoju.site
ORDER BY site_id
