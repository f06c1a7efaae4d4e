"""The real PostgreSQL server of the tests (pg_server.py, the pg_server and pg_url fixtures)."""

import psycopg
import pytest


def test_a_fresh_database_answers(pg_url):
    with psycopg.connect(pg_url, connect_timeout=10) as con:
        assert con.execute("SELECT 1").fetchone() == (1,)
        assert con.execute("SELECT current_user").fetchone() == ("postgres",)
    assert pg_url.rsplit("/", 1)[1] != "postgres"


def test_a_role_needs_its_password(pg_server, pg_url):
    dbname = pg_url.rsplit("/", 1)[1]
    role = f"alice_{dbname}"  # roles belong to the whole server, shared by the session's tests
    pg_server.create_role(role, "s3cret pass/word", database=dbname)
    with psycopg.connect(pg_server.url(dbname, role, "s3cret pass/word")) as con:
        assert con.execute("SELECT current_user").fetchone() == (role,)
        con.execute("CREATE TABLE t (x int)")  # granted CREATE on schema public
    for password in ("wrong", None):
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(pg_server.url(dbname, role, password), connect_timeout=10)
    with psycopg.connect(pg_server.url(dbname)) as con:
        hba = con.execute(
            "SELECT auth_method FROM pg_hba_file_rules WHERE user_name = '{all}' AND type = 'host'"
        )
        assert hba.fetchall() == [("scram-sha-256",)]


def test_restart(pg_server, pg_url):
    with psycopg.connect(pg_url) as con:
        con.execute("CREATE TABLE kept (x int); INSERT INTO kept VALUES (7)")
        con.commit()
        pg_server.restart()
        with pytest.raises(psycopg.OperationalError):
            con.execute("SELECT 1")
    with psycopg.connect(pg_url, connect_timeout=10) as con:
        assert con.execute("SELECT x FROM kept").fetchall() == [(7,)]
