UPDATE komoju.notification SET sent_at = now() WHERE notification_id = %(notification_id)s
