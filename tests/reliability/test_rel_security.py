"""Security checks (SPEC §7; issue 5, item 6).

- The secret key appears nowhere: the refund and cancel DAGs run as `airflow dags test` subprocesses with a
  recognisable key (``sk_test_SECRETCANARY_...``), next to a site whose recognisable wrong key KOMOJU refuses (an
  exception naming the site and connection) and a site whose "KOMOJU" echoes the key it received back in its error
  messages; the payment-method sync runs in process against the same. Then the whole Airflow home of every run
  (logs, ``airflow.cfg``, the metadata database as bytes and as an ``iterdump``, the XCom table), a ``pg_dump`` of
  the komoju database, every e-mail (raw and decoded) and the in-process output are searched for each key and its
  HTTP Basic form: absent everywhere.
- ``https`` is enforced for every non-loopback host, and TLS verification is on: a KOMOJU behind a self-signed
  certificate is refused (and reached once the certificate is trusted, so the refusal is verification).
- SQL is never built from values: every ``execute`` in plugins/ runs a named query (``komoju.sql.query``) or a
  migration file, and no f-string, ``%`` or ``.format`` builds SQL text (the detector is checked on bad snippets).
E-mail escaping is asserted by the bad-input catalogue (test_rel_bad_input.py) on HTML in every field.
"""

from __future__ import annotations

import ast
import base64
import datetime as dt
import http.server
import ipaddress
import json
import os
import pickle
import re
import secrets
import sqlite3
import ssl
import subprocess
import threading
from pathlib import Path

import pytest
from reliability_kit import (
    DAG_IDS,
    DagTestProcess,
    OddAnswer,
    OddKomoju,
    Order,
    done_order,
    insert_orders,
    insert_site,
    komoju_connection,
    rejected_order,
    rows,
    scenario,
    subprocess_environment,
    unknown_payment_order,
)
from testkit import pid

from devtools import PROJECT_ROOT
from devtools.smtp_sink import SmtpSink
from emulator.testing import EmulatorServer

pytestmark = pytest.mark.reliability

CANARY = f"sk_test_SECRETCANARY_{secrets.token_hex(8)}"
WRONG_CANARY = f"sk_test_SECRETCANARYWRONG_{secrets.token_hex(8)}"


def basic(key: str) -> str:
    return base64.b64encode(f"{key}:".encode()).decode()


NEEDLES = {
    "secret key": CANARY,
    "its Basic auth token": basic(CANARY),
    "wrong secret key": WRONG_CANARY,
    "its Basic auth token (wrong key)": basic(WRONG_CANARY),
}


def leaks(blob: bytes | str, where: str) -> list[str]:
    """Which needles occur in ``blob`` (text or bytes, also as UTF-16 for bytes)."""
    data = blob.encode("utf-8", errors="replace") if isinstance(blob, str) else blob
    found = []
    for what, needle in NEEDLES.items():
        forms = (needle.encode(), needle.encode("utf-16-le"))
        if any(form in data for form in forms):
            found.append(f"{what} found in {where}")
    return found


def sqlite_dump(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        return "\n".join(conn.iterdump())
    finally:
        conn.close()


def home_leaks(home: Path) -> list[str]:
    found = []
    for path in sorted(p for p in home.rglob("*") if p.is_file()):
        found += leaks(path.read_bytes(), str(path))
    for db_file in home.rglob("*.db"):
        found += leaks(sqlite_dump(db_file), f"iterdump of {db_file}")
    return found


def mail_leaks(sink: SmtpSink) -> list[str]:
    found = []
    for n, mail in enumerate(sink.messages):
        found += leaks(mail.message.as_bytes(), f"e-mail {n} (raw)")
        for part in mail.message.walk():
            if not part.is_multipart():
                found += leaks(part.get_payload(decode=True) or b"", f"e-mail {n} (decoded part)")
    return found


def sites_and_orders(job: str) -> tuple[list[Order], list[Order], list[Order]]:
    j = job[0]
    ok = [done_order("sec-ok", job, f"SO{j}-{n}", f"so{j}{n}", 1000 + n) for n in range(3)]
    ok += [rejected_order("sec-ok", job, f"SO{j}-R", f"so{j}r"), unknown_payment_order("sec-ok", job, f"SO{j}-N",
                                                                                        f"so{j}n")]  # fmt: skip
    refused = [done_order("sec-refused", job, f"SR{j}-1", f"sr{j}1", 500)]
    echoed = [Order("sec-echo", f"SE{j}-{n}", job, pid(f"se{j}{n}"), expect="Failed", final=True) for n in range(2)]
    return ok, refused, echoed


def echo_answer(status: int, html: bool = False, code: str = "bad_request"):
    """An answer that quotes back the Authorization header and the key decoded from it."""

    def answer(headers: dict[str, str]) -> OddAnswer:
        authorization = headers.get("Authorization", "")
        key = base64.b64decode(authorization.partition(" ")[2] or "").decode(errors="replace").rstrip(":")
        text = f"invalid request from key {key} (header {authorization})"
        if html:
            return OddAnswer(status, f"<html><body><h1>Error</h1><p>{text}</p></body></html>".encode(), "text/html")
        return OddAnswer.json(status, {"error": {"code": code, "message": text, "param": key}})

    return answer


def test_secret_key_appears_in_no_log_xcom_row_e_mail_or_exception(
    pg_server, make_database, make_airflow_home, run_dag, capfd, monkeypatch
):
    from airflow.configuration import AIRFLOW_HOME

    dbname = make_database()
    jobs = {job: sites_and_orders(job) for job in DAG_IDS}
    all_orders = [o for parts in jobs.values() for part in parts for o in part]
    echo_posts = {o.payment_id: echo_answer(400) for o in all_orders if o.site_id == "sec-echo"}
    for job, refusal in (("cancel", "not_cancellable"), ("refund", "not_refundable")):  # then a payment check
        echo_posts[pid(f"se{job[0]}1")] = echo_answer(422, code=refusal)
    echo_gets = {o.payment_id: echo_answer(500, html=True) for o in all_orders if o.site_id == "sec-echo"}
    echo_gets["payment_methods"] = echo_answer(401)
    payments = [o.payment for o in all_orders if o.payment]
    with (
        EmulatorServer(scenario(payments, [CANARY])) as komoju,
        OddKomoju(echo_posts, echo_gets) as echo,
        SmtpSink() as sink,
    ):
        conn = pg_server.connect(dbname)
        try:
            with conn.cursor() as cur:
                insert_site(cur, "sec-ok", emails=["ops-sec@example.com"])
                insert_site(cur, "sec-refused", emails=["ops-sec@example.com"], conn_id="komoju_refused")
                insert_site(cur, "sec-echo", emails=["ops-sec@example.com"], conn_id="komoju_echo")
                insert_orders(cur, all_orders)
            conn.commit()
        finally:
            conn.close()
        connections = {
            "komoju_postgres": pg_server.airflow_connection(dbname),
            "komoju_default": komoju_connection(komoju.base_url, CANARY),
            "komoju_refused": komoju_connection(komoju.base_url, WRONG_CANARY),
            "komoju_echo": komoju_connection(echo.base_url, CANARY),
            "smtp_default": sink.airflow_connection(),
        }
        homes, processes = [], []
        for job, dag_id in DAG_IDS.items():
            home = make_airflow_home(f"security-{job}")
            homes.append(home)
            conf = {"site_ids": ["sec-ok", "sec-refused", "sec-echo"]}
            processes.append(DagTestProcess(dag_id, conf, subprocess_environment(home, connections),
                                            home / "logs" / f"dags-test-{job}.log"))  # fmt: skip
        try:
            codes = [p.wait(600) for p in processes]
        finally:
            for p in processes:
                p.kill()
        # the payment-method sync, and a direct look at the hook's exceptions, in this process
        for conn_id, conn in connections.items():
            monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
        sync = run_dag("komoju_update_payment_methods", site_ids=["sec-ok", "sec-refused", "sec-echo"])
        exceptions = hook_exceptions(komoju.base_url, echo.base_url)
        output = capfd.readouterr()

        # the runs really had the keys in hand: KOMOJU authenticated them, refused the wrong one, echoed the key
        assert all(code != 0 for code in codes), "each run has a refused site, so it must fail"
        for p in processes:
            assert "sec-refused" in p.output()
            assert "komoju_refused" in p.output()
        assert sync.per_site("sync_site")["sec-ok"].state == "success"
        assert {e["merchant_id"] for e in komoju.requests_log()} >= {"merchant-rel", None}
        assert any(CANARY in base64.b64decode(h["Authorization"][6:]).decode() for _, _, h in echo.requests)
        assert sink.messages, "the final failures of sec-ok and sec-echo are e-mailed"
        assert leaks(f"x{CANARY}x", "control") == ["secret key found in control"], "the search itself works"

        found = []
        for home in [*homes, Path(AIRFLOW_HOME)]:
            found += home_leaks(home)
        for home in homes:
            xcoms = sqlite3.connect(home / "airflow.db")
            try:
                values = xcoms.execute("SELECT key, value FROM xcom").fetchall()
            finally:
                xcoms.close()
            assert values, f"no XCom in {home}: the search would prove nothing"
            found += leaks(repr(values), f"XComs of {home}")
        dump = pg_dump(pg_server, dbname)
        assert "sec-echo" in dump
        found += leaks(dump, "pg_dump of the komoju database")
        found += mail_leaks(sink)
        found += leaks(output.out + output.err, "the in-process run's output")
        found += leaks(exceptions, "KomojuAPIError str/repr/args/pickle")
        assert found == []
        # what the echoing KOMOJU said is kept, the key in it replaced
        stored = rows_of(pg_server, dbname, "SELECT CASE payment_status WHEN 'paid' THEN komoju_refund_response"
                                            " ELSE komoju_cancel_response END FROM komoju.orders"
                                            " WHERE site_id = 'sec-echo'")  # fmt: skip
        assert len(stored) == 4
        assert all("invalid request from key ***" in (r or "") for (r,) in stored), stored
        # every refusal is looked at before it is final: each order's payment check (an echoing 500) is kept too
        assert sum("checking the payment failed" in (r or "") for (r,) in stored) == 4, stored


def rows_of(pg_server, dbname: str, sql: str) -> list[tuple]:
    conn = pg_server.connect(dbname)
    try:
        return rows(conn, sql)
    finally:
        conn.close()


def pg_dump(pg_server, dbname: str) -> str:
    dsn = pg_server.connect(dbname).get_dsn_parameters()
    env = {**os.environ}
    if pg_server.params.get("password"):
        env["PGPASSWORD"] = str(pg_server.params["password"])
    done = subprocess.run(
        ["pg_dump", "--no-owner", "-h", dsn.get("host") or "127.0.0.1", "-p", str(dsn.get("port") or 5432),
         "-U", dsn.get("user") or "postgres", dbname],
        capture_output=True, text=True, env=env, timeout=120, check=True,
    )  # fmt: skip
    return done.stdout


def hook_exceptions(komoju_url: str, echo_url: str) -> str:
    """Every way an exception of the hook can be shown, for a refused key and for an echoed one."""
    from komoju.hooks import KomojuAPIError, KomojuHook

    texts = []
    for conn_id, payment_id in (("komoju_refused", pid("sor0")), ("komoju_echo", pid("ser0"))):
        hook = KomojuHook(conn_id)
        try:
            with pytest.raises(KomojuAPIError) as caught:
                hook.refund_payment(payment_id, "komoju-airflow-test-key-1")
        finally:
            hook.close()
        error = caught.value
        texts += [str(error), repr(error), repr(error.args), repr(vars(error))]
        texts.append(repr(pickle.loads(pickle.dumps(error))))  # noqa: S301 (our own object, round-tripped)
        texts.append(repr(pickle.dumps(error)))
    return "\n".join(texts)


# ---------------------------------------------------------------------------------------------------------------
# https only, TLS verified
# ---------------------------------------------------------------------------------------------------------------

REFUSED_HOSTS = [
    "http://example.com",
    "http://komoju.com",
    "http://10.0.0.1:8080",
    "http://localhost.example.com",
    "http://127.0.0.1.nip.io",
    "http://[::ffff:8.8.8.8]",
    "http://0x7f000001",
    "ftp://127.0.0.1",
    "http://user:pass@127.0.0.1",
]
ALLOWED = {
    "": "https://komoju.com/api/v1",
    "example.com": "https://example.com/api/v1",
    "https://example.com": "https://example.com/api/v1",
    "http://127.0.0.1:8123": "http://127.0.0.1:8123/api/v1",
    "http://localhost:8123": "http://localhost:8123/api/v1",
    "http://[::1]:8123": "http://[::1]:8123/api/v1",
}


@pytest.mark.parametrize("host", REFUSED_HOSTS)
def test_plain_http_and_odd_hosts_are_refused_off_loopback(host, monkeypatch):
    from komoju.hooks import KomojuHook

    monkeypatch.setenv("AIRFLOW_CONN_KOMOJU_DEFAULT", json.dumps({"conn_type": "komoju", "host": host,
                                                                  "password": CANARY}))  # fmt: skip
    with pytest.raises(ValueError, match="komoju_default") as refused:
        _ = KomojuHook().base_url
    assert CANARY not in str(refused.value)


@pytest.mark.parametrize(("host", "base_url"), ALLOWED.items())
def test_https_by_default_and_http_only_on_loopback(host, base_url, monkeypatch):
    from komoju.hooks import KomojuHook

    monkeypatch.setenv("AIRFLOW_CONN_KOMOJU_DEFAULT", json.dumps({"conn_type": "komoju", "host": host,
                                                                  "password": CANARY}))  # fmt: skip
    hook = KomojuHook()
    assert hook.base_url == base_url
    verify = hook.session.verify  # verification on: requests' default CAs, or a CA bundle named by the environment
    assert verify is True or (isinstance(verify, str) and base_url.startswith("https://") and Path(verify).exists())
    hook.close()


@pytest.fixture
def self_signed_komoju(tmp_path):
    """An https "KOMOJU" on 127.0.0.1 with a self-signed certificate; yields (url, cert path, requests seen)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))  # fmt: skip
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            seen.append(self.path)
            body = json.dumps({"id": pid("tls"), "status": "captured"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    class QuietServer(http.server.ThreadingHTTPServer):
        def handle_error(self, request, client_address) -> None:  # failed handshakes are expected here
            pass

    server = QuietServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", cert_path, seen
    finally:
        server.shutdown()
        server.server_close()


def test_tls_verification_refuses_an_untrusted_certificate(self_signed_komoju, monkeypatch):
    from komoju.hooks import KomojuAPIError, KomojuHook

    url, cert_path, seen = self_signed_komoju
    monkeypatch.setenv("AIRFLOW_CONN_KOMOJU_DEFAULT", json.dumps(komoju_connection(url, CANARY, max_retries=0)))
    monkeypatch.setenv("CURL_CA_BUNDLE", "")  # a classic way to switch verification off: it must not
    hook = KomojuHook()
    try:
        with pytest.raises(KomojuAPIError, match=r"(?i)certificate|ssl"):
            hook.get_payment(pid("tls"))
    finally:
        hook.close()
    assert seen == [], "a request reached a server whose certificate is not trusted"

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert_path))  # trust it: now the same call goes through
    hook = KomojuHook()
    try:
        assert hook.get_payment(pid("tls"))["status"] == "captured"
    finally:
        hook.close()
    assert seen == [f"/api/v1/payments/{pid('tls')}"]


# ---------------------------------------------------------------------------------------------------------------
# SQL is parameterised
# ---------------------------------------------------------------------------------------------------------------

_SQL_TEXT = re.compile(
    r"\b(SELECT|INSERT|UPDATE|DELETE|CREATE|DROP|ALTER|TRUNCATE|GRANT|COPY|WITH)\b[\s\S]*"
    r"\b(FROM|INTO|SET|TABLE|WHERE|VALUES|SCHEMA|INDEX|AS)\b",
    re.IGNORECASE,
)
_QUERY_NAME = re.compile(r"[a-z0-9_]*")
_EXECUTING = {"execute", "executemany", "mogrify", "copy_expert", "copy_from", "copy_to"}


def _constant_text(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _built_text(node: ast.AST) -> str | None:
    """The literal text of a string built from values (f-string, %, .format, +), else None."""
    if isinstance(node, ast.JoinedStr) and any(isinstance(v, ast.FormattedValue) for v in node.values):
        return "".join(_constant_text(v) or " " for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod | ast.Add):
        parts = [_constant_text(node.left), _constant_text(node.right)]
        return " ".join(p for p in parts if p) or None
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format":
        return _constant_text(node.func.value)
    return None


def _is_named_query(node: ast.AST) -> bool:
    """``query("name")``, ``query(name)`` or ``query(f"{job}_eligible")``: a file chosen by name."""
    if not (isinstance(node, ast.Call) and len(node.args) == 1 and not node.keywords):
        return False
    func = node.func
    if not ((isinstance(func, ast.Name) and func.id == "query") or (isinstance(func, ast.Attribute)
                                                                     and func.attr == "query")):  # fmt: skip
        return False
    arg = node.args[0]
    if isinstance(arg, ast.Constant):
        return isinstance(arg.value, str) and bool(_QUERY_NAME.fullmatch(arg.value))
    if isinstance(arg, ast.JoinedStr):
        return all(_QUERY_NAME.fullmatch(_constant_text(v) or "") for v in arg.values
                   if not isinstance(v, ast.FormattedValue))  # fmt: skip
    return isinstance(arg, ast.Name)


_SQLALCHEMY_STATEMENTS = {"select", "insert", "update", "delete"}


def _is_sqlalchemy_statement(node: ast.AST) -> bool:
    """``select(...).join(...).where(...)``: a SQLAlchemy Core statement, whose values are bound parameters."""
    while isinstance(node, ast.Call):
        if isinstance(node.func, ast.Name):
            return node.func.id in _SQLALCHEMY_STATEMENTS
        if not isinstance(node.func, ast.Attribute):
            return False
        node = node.func.value
    return False


def sql_violations(source: str, filename: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        text = _built_text(node)
        if text and _SQL_TEXT.search(text):
            found.append(f"{filename}:{node.lineno}: SQL text built from values: {ast.unparse(node)[:100]}")
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in _EXECUTING
            and node.args
            and not (isinstance(node.func.value, ast.Call) and getattr(node.func.value.func, "id", "") == "super")
        ):
            first = node.args[0]
            migration_file = isinstance(first, ast.Attribute) and first.attr == "text"
            if not (_is_named_query(first) or migration_file or _is_sqlalchemy_statement(first)):
                found.append(f"{filename}:{node.lineno}: {node.func.attr}() of SQL that is not a named query: "
                             f"{ast.unparse(first)[:100]}")  # fmt: skip
    return found


@pytest.mark.parametrize(
    "snippet",
    [
        "cur.execute(f\"SELECT * FROM komoju.orders WHERE order_no = '{order_no}'\")",
        'cur.execute("UPDATE komoju.orders SET x = %s" % value)',
        'cur.execute("DELETE FROM komoju.orders WHERE site_id = {}".format(site_id))',
        'cur.execute("SELECT * FROM komoju.site WHERE site_id = \'" + site_id + "\'")',
        "cur.execute(query('orders') + where)",
        "cur.execute(query(name).format(table))",
        "cur.execute(statement)",
        'sql = f"INSERT INTO komoju.site VALUES ({site_id})"',
        "session.execute(text(f\"SELECT * FROM task_instance WHERE dag_id = '{dag_id}'\"))",
        "session.execute(text(statement).bindparams(x=1))",
    ],
)
def test_the_sql_detector_catches_value_built_sql(snippet):
    assert sql_violations(snippet, "snippet.py") != []


@pytest.mark.parametrize(
    "snippet",
    [
        'cur.execute(query("sites_by_id"), {"site_ids": ids})',
        'cur.execute(query(f"{_job(job)}_eligible"), params)',
        "cur.execute(query(name), params)",
        "cur.execute(migration.text)",
        "super().execute(context)",
        "session.execute(select(TaskInstance.run_id).where(TaskInstance.dag_id == dag_id).limit(1))",
        'message = f"Site {site_id}: {count} orders updated"',
    ],
)
def test_the_sql_detector_accepts_named_queries(snippet):
    assert sql_violations(snippet, "snippet.py") == []


DYNAMIC_SQL = r"(?i)\bEXECUTE\b(?!\s+(?:FUNCTION|PROCEDURE)\b)|\bformat\s*\(|\bquote_(?:ident|literal|nullable)\s*\("


def test_no_sql_is_built_from_values_in_plugins_dags_or_include():
    files = sorted((PROJECT_ROOT / "plugins").rglob("*.py")) + sorted((PROJECT_ROOT / "dags").glob("*.py"))
    assert len(files) > 10
    found = []
    for path in files:
        found += sql_violations(path.read_text(encoding="utf-8"), str(path.relative_to(PROJECT_ROOT)))
    # the SQL files: no dynamic SQL inside the database either (EXECUTE of built text, format(), quote_*()); a
    # trigger's EXECUTE FUNCTION names a function, it runs no text
    for path in sorted((PROJECT_ROOT / "include" / "sql").rglob("*.sql")):
        text = re.sub(r"--[^\n]*", "", path.read_text(encoding="utf-8"))
        for bad in re.findall(DYNAMIC_SQL, text):
            found.append(f"{path.relative_to(PROJECT_ROOT)}: dynamic SQL ({bad})")
        # values come in as named parameters only: psycopg2's %(name)s, never a positional %s
        found += [f"{path.relative_to(PROJECT_ROOT)}: positional parameter" for _ in re.findall(r"%s\b", text)]
    assert found == []
