-- The site's e-mails prepared but not sent; locking them waits for a send in progress to finish.
SELECT notification_id
FROM komoju.notification
WHERE job = %(job)s AND site_id = %(site_id)s AND sent_at IS NULL
ORDER BY notification_id
FOR UPDATE
