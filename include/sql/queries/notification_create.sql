-- A new e-mail for the given failures and customer links (only those in no e-mail yet). Its Message-ID is fixed
-- here, so a resend of the same e-mail carries the same Message-ID.
WITH next_id AS (
    SELECT nextval('komoju.notification_notification_id_seq') AS id
),
new_notification AS (
    INSERT INTO komoju.notification (notification_id, job, site_id, recipients, subject, message_id, run_id)
    SELECT id, %(job)s, %(site_id)s, %(recipients)s, %(subject)s,
           '<komoju-airflow.' || %(job)s || '.' || id || '.' || left(md5(%(site_id)s), 8) || '@' || %(mail_domain)s || '>',
           %(run_id)s
    FROM next_id
    RETURNING notification_id, message_id
),
assigned AS (
    UPDATE komoju.final_failure AS f
    SET notification_id = (SELECT notification_id FROM new_notification)
    WHERE f.failure_id = ANY(%(failure_ids)s::bigint[]) AND f.notification_id IS NULL
    RETURNING f.failure_id
),
assigned_links AS (
    UPDATE komoju.customer_link AS l
    SET notification_id = (SELECT notification_id FROM new_notification)
    WHERE l.link_id = ANY(%(link_ids)s::bigint[]) AND l.notification_id IS NULL
    RETURNING l.link_id
)
SELECT notification_id, message_id, (SELECT count(*) FROM assigned), (SELECT count(*) FROM assigned_links)
FROM new_notification
