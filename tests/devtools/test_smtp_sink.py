"""The SMTP sink receives real mail over SMTP, including what Airflow's SMTP connection sends."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage


def _mail(subject: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "ops@example.com"
    message["To"] = "shop@example.com"
    message["Subject"] = subject
    message.set_content("<p>注文 1001</p>", subtype="html")
    return message


def test_sink_keeps_what_it_receives(smtp_sink, tmp_path):
    with smtplib.SMTP(smtp_sink.host, smtp_sink.port, timeout=10) as client:
        client.send_message(_mail("返金できなかった注文: 1件"))
    (received,) = smtp_sink.wait_for(1)
    assert received.rcpt_tos == ("shop@example.com",)
    assert received.message["Subject"] == "返金できなかった注文: 1件"
    assert "注文 1001" in received.message.get_body(("html",)).get_content()


def test_airflow_smtp_hook_delivers_to_the_sink(smtp_sink):
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    with SmtpHook() as hook:
        hook.send_email_smtp(to="shop@example.com", subject="テスト", html_content="<b>ok</b>")
    (received,) = smtp_sink.wait_for(1)
    assert received.message["Subject"] == "テスト"
    assert received.mail_from == "komoju-airflow@example.com"
