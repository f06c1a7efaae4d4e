"""Exactly once on PostgreSQL where SQL is tricky: writes the parse tree cannot see, TEMP
DDL (which the read-only net cannot check), names that may be TEMP or permanent, the RSSD
behind the search path, statements a cell cannot run."""

from test_postgres import pg, read_pg  # noqa: F401 - the fixture


def _setup(kernel):
    kernel.ok(
        "CREATE TABLE hits (n int);\n"
        "CREATE SEQUENCE s;\n"
        "CREATE FUNCTION hit() RETURNS int LANGUAGE sql AS "
        "$$ INSERT INTO hits VALUES (1) RETURNING n $$",
        cell_id="setup",
    )


def test_a_writing_select_applies_whole_and_once(pg, pg_url):  # noqa: F811
    _setup(pg)
    code = "SELECT hit() FROM generate_series(1, 200)"
    first = pg.ok(code, cell_id="w")
    assert first.rssd["kind"] == "stateful"
    assert pg.ok(code, cell_id="w").rssd["replayed"] is True
    assert read_pg(pg_url, "SELECT count(*) FROM hits") == [(200,)]
    # A write past the rows shown is seen by the net too.
    late = "SELECT CASE WHEN g > 100 THEN hit() END FROM generate_series(1, 200) AS g"
    assert pg.ok(late, cell_id="late").rssd["kind"] == "stateful"
    assert read_pg(pg_url, "SELECT count(*) FROM hits") == [(300,)]
    pg.ok("SELECT nextval('s') FROM generate_series(1, 200)", cell_id="seq")
    assert read_pg(pg_url, "SELECT last_value FROM s") == [(200,)]
    # A SELECT that cannot write still stops after the rows shown.
    assert pg.ok("SELECT generate_series(1, 100000000)").rssd["kind"] == "read"


def test_temp_ddl_that_may_write_is_refused(pg, pg_url):  # noqa: F811
    _setup(pg)
    for code in (
        "CREATE TEMP TABLE run AS SELECT nextval('s') AS id",
        "SELECT hit() INTO TEMP h",
    ):
        reply = pg.execute(code)
        assert reply.error["ename"] == "Stateful Cell Error", code
        assert "INSERT INTO" in reply.error["evalue"]
    assert read_pg(pg_url, "SELECT count(*) FROM hits") == [(0,)]
    assert read_pg(pg_url, "SELECT is_called FROM s") == [(False,)]
    # The way the message gives works, and runs every time.
    for _ in range(2):
        pg.ok("CREATE TEMP TABLE IF NOT EXISTS run (id bigint)", cell_id="t1")
        assert pg.ok("INSERT INTO run SELECT 1", cell_id="t2").rssd["kind"] == "session"


def test_a_name_taken_for_a_temp_table_that_is_permanent(pg, pg_url):  # noqa: F811
    pg.ok("CREATE TABLE u AS SELECT 1 AS n", cell_id="u")
    pg.ok("CREATE TEMP TABLE u AS SELECT 2 AS n")
    reply = pg.execute("DISCARD TEMP;\nTRUNCATE u")
    assert reply.error["ename"] == "Stateful Cell Error"
    assert "changes the session" in reply.error["evalue"]
    assert read_pg(pg_url, "SELECT count(*) FROM u") == [(1,)]
    pg.ok("CREATE TEMP TABLE u AS SELECT 2 AS n")
    pg.ok("SET search_path = public, pg_temp")  # the permanent u is found first now
    first = pg.ok("TRUNCATE u", cell_id="tr")
    assert first.rssd["kind"] == "stateful"
    assert pg.ok("TRUNCATE u", cell_id="tr").rssd["replayed"] is True


def test_large_objects_are_stateful(pg, pg_url):  # noqa: F811
    for _ in range(2):
        pg.ok("SELECT lo_from_bytea(0, 'abc') IS NOT NULL AS made", cell_id="lo")
    assert read_pg(pg_url, "SELECT count(*) FROM pg_largeobject_metadata") == [(1,)]


def test_a_writing_cte_runs_once(pg, pg_url):  # noqa: F811
    pg.ok("CREATE TABLE t (n int)")
    code = "WITH i AS (INSERT INTO t VALUES (7) RETURNING n) SELECT n FROM i"
    first = pg.ok(code, cell_id="cte")
    assert first.rssd["kind"] == "stateful" and "7" in first.text
    assert pg.ok(code, cell_id="cte").rssd["replayed"] is True
    assert read_pg(pg_url, "SELECT count(*) FROM t") == [(1,)]
    for _ in range(2):  # row locks are no change: FOR UPDATE reads every time
        assert pg.ok("SELECT n FROM t FOR UPDATE", cell_id="fu").rssd["kind"] == "read"


def test_the_rssd_cannot_be_reached_around_the_guard(pg, pg_url):  # noqa: F811
    pg.ok("CREATE TABLE a (n int)")
    truncate = pg.execute("TRUNCATE a, rssd.orchestration_session_state")
    assert truncate.error["ename"] == "Audit Trail Error"
    pg.ok("SET search_path = rssd, public")
    delete = pg.execute("DELETE FROM orchestration_session_exec")
    assert delete.error["ename"] == "Audit Trail Error"
    assert read_pg(pg_url, "SELECT count(*) > 0 FROM rssd.orchestration_session_state") == [(True,)]


def test_statements_a_cell_cannot_run_are_explained(pg):  # noqa: F811
    pg.ok("CREATE TABLE c (n int)")
    for code in ("COPY c FROM STDIN", "COPY c TO STDOUT"):
        reply = pg.execute(code)
        assert reply.error["ename"] == "Invalid Input" and "COPY" in reply.error["evalue"]
    assert "1" in pg.ok("SELECT 1 AS one").text  # the session is fine afterwards
    pg.ok(
        "CREATE PROCEDURE p() LANGUAGE plpgsql AS $$ BEGIN INSERT INTO c VALUES (1); COMMIT; END $$"
    )
    call = pg.execute("CALL p()")
    assert call.error is not None and "@always" in call.error["evalue"]
    pg.ok("-- @always\nCALL p()")
    params = pg.execute("-- @parameters\nSET VARIABLE region = 'north';")
    assert params.error["ename"] == "Invalid Input" and "@name" in params.error["evalue"]


def test_the_guard_is_asked_again_for_a_cell_run_again(pg, pg_url):  # noqa: F811
    pg.ok("CREATE TABLE t (n int)", cell_id="t")
    code = "CREATE RULE quiet AS ON INSERT TO orchestration_session_state DO INSTEAD NOTHING"
    assert pg.execute(code).error is not None  # no such table on the default search path
    pg.ok("SET search_path = rssd, public")
    again = pg.execute(code)  # the same text: its plan is cached, the guard is not
    assert again.error["ename"] == "Audit Trail Error"
    cte = "WITH x AS (DELETE FROM orchestration_session_state RETURNING 1) SELECT count(*) FROM x"
    assert pg.execute(cte).error["ename"] == "Audit Trail Error"


def test_writes_through_ctes_views_and_replaced_functions(pg, pg_url):  # noqa: F811
    pg.ok("CREATE TEMP TABLE tmp (a int)")
    cte = pg.ok("WITH x AS (INSERT INTO tmp VALUES (1) RETURNING a) SELECT a FROM x")
    assert cte.rssd["kind"] == "session"
    pg.ok(
        "CREATE SCHEMA app;\nCREATE SEQUENCE public.sq;\nCREATE VIEW app.v AS SELECT nextval('public.sq') AS n"
    )
    pg.ok("SET search_path = app, public")
    assert (
        pg.execute("CREATE TEMP TABLE t4 AS SELECT * FROM v").error["ename"]
        == "Stateful Cell Error"
    )
    assert read_pg(pg_url, "SELECT is_called FROM public.sq") == [(False,)]
    pg.ok(
        "CREATE TABLE public.log (n int);\nCREATE FUNCTION public.f() RETURNS int IMMUTABLE LANGUAGE sql AS 'SELECT 1'"
    )
    pg.ok("SELECT f()")
    pg.ok(
        "CREATE OR REPLACE FUNCTION public.f() RETURNS int VOLATILE LANGUAGE sql AS 'INSERT INTO public.log VALUES (1) RETURNING n'"
    )
    assert pg.execute("CREATE TEMP TABLE t5 AS SELECT f()").error["ename"] == "Stateful Cell Error"
    assert read_pg(pg_url, "SELECT count(*) FROM public.log") == [(0,)]
    pg.ok("CREATE TEMP TABLE shuffled AS SELECT random() AS r")  # a harmless built-in
