-- Change the settings a request names, keeping the others (not the KOMOJU connection: keys stay in Airflow).
-- Each set_<field> parameter says whether that field is changed.
UPDATE komoju.site
SET name          = CASE WHEN %(set_name)s THEN %(name)s ELSE name END,
    notify_emails = CASE WHEN %(set_notify_emails)s THEN %(notify_emails)s::text[] ELSE notify_emails END,
    email_locale  = CASE WHEN %(set_email_locale)s THEN %(email_locale)s ELSE email_locale END,
    email_enabled = CASE WHEN %(set_email_enabled)s THEN %(email_enabled)s ELSE email_enabled END,
    active        = CASE WHEN %(set_active)s THEN %(active)s ELSE active END
WHERE site_id = %(site_id)s
RETURNING site_id
