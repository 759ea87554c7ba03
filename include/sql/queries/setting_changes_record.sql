-- Record changed fields (a JSON array of {action, subject, field, old_value, new_value}) for one site.
INSERT INTO komoju.setting_change (changed_by, channel, action, site_id, subject, field, old_value, new_value)
SELECT %(changed_by)s, %(channel)s, c.action, %(site_id)s, c.subject, c.field, c.old_value, c.new_value
FROM jsonb_to_recordset(%(changes)s::jsonb)
     AS c(action text, subject text, field text, old_value jsonb, new_value jsonb)
