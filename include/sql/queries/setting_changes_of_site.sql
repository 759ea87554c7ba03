-- A site's most recent setting changes, newest first.
SELECT change_id, changed_at, changed_by, channel, action, site_id, subject, field, old_value, new_value
FROM komoju.setting_change
WHERE site_id = %(site_id)s
ORDER BY changed_at DESC, change_id DESC
LIMIT %(limit)s
