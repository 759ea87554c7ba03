-- The site's e-mails prepared but never sent, to send again as they were (their failures and links: by id).
SELECT notification_id, subject, message_id
FROM komoju.notification
WHERE job = %(job)s AND site_id = %(site_id)s AND sent_at IS NULL
ORDER BY notification_id
