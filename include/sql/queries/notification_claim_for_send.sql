-- Lock one e-mail for sending: whether it was sent already, and how many failures it still carries.
SELECT n.sent_at,
       (SELECT count(*) FROM komoju.final_failure AS f WHERE f.notification_id = n.notification_id) AS failures
FROM komoju.notification AS n
WHERE n.notification_id = %(notification_id)s
FOR UPDATE
