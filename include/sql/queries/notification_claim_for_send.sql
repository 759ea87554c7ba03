-- Lock one e-mail for sending until the send is recorded: when it was sent, if it was. Waiting on the lock
-- of a concurrent sender returns the row as that sender left it (sent_at set), so it is not sent twice.
SELECT sent_at
FROM komoju.notification
WHERE notification_id = %(notification_id)s
FOR UPDATE
