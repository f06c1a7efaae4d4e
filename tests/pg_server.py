"""A real, throwaway PostgreSQL server for the tests (Debian's `postgresql` package).

`PgServer()` finds the server's programs, makes a cluster in a fresh temporary folder and
starts it on a free TCP port of 127.0.0.1; `close()` stops it and removes the folder.
Authentication (pg_hba.conf): the superuser `postgres` connects over TCP without a password,
every other role needs its password (scram-sha-256), the Unix socket trusts everyone.

`initdb`, `pg_ctl` and `postgres` refuse to run as root: as root, they run as the `postgres`
OS user (`runuser -u postgres --`), which owns the folder. Every program is run with a
timeout, so that a stuck server fails the tests instead of hanging them.
"""

import atexit
import glob
import os
import shlex
import shutil
import socket
import stat
import subprocess
import tempfile
import uuid
from urllib.parse import quote

TIMEOUT = 60
OS_USER = "postgres"  # the OS user that runs the server when we are root
SUPERUSER = "postgres"  # the cluster's superuser role


class PgNotInstalled(RuntimeError):
    """PostgreSQL's server programs (pg_ctl, initdb) are not on this machine."""


def find_bindir() -> str:
    """The folder holding pg_ctl and initdb: `pg_config --bindir` if it names one (Debian's
    pg_config comes with libpq-dev, possibly without the server), else the highest version's
    /usr/lib/postgresql/*/bin; PgNotInstalled if none."""

    def has_server(folder: str) -> bool:
        return all(os.access(os.path.join(folder, p), os.X_OK) for p in ("pg_ctl", "initdb"))

    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=TIMEOUT, check=True
            ).stdout.strip()
        except (subprocess.SubprocessError, OSError):
            out = ""
        if out and has_server(out):
            return out

    def version(folder: str) -> tuple:
        name = os.path.basename(os.path.dirname(folder))
        return tuple(int(p) if p.isdigit() else 0 for p in name.split("."))

    candidates = [d for d in glob.glob("/usr/lib/postgresql/*/bin") if has_server(d)]
    if candidates:
        return max(candidates, key=version)
    raise PgNotInstalled(
        "PostgreSQL's server programs (pg_ctl, initdb) were not found (neither via "
        "`pg_config --bindir` nor in /usr/lib/postgresql/*/bin): install Debian's "
        "`postgresql` package (apt-get install postgresql)"
    )


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _base_folder() -> str:
    """Where to make the cluster's folder: the usual temporary folder, unless running as root
    and one of its parents is not traversable by others (say TMPDIR under /root), then /tmp."""
    base = tempfile.gettempdir()
    if os.geteuid() != 0:
        return base
    path = os.path.realpath(base)
    while True:
        if not os.stat(path).st_mode & stat.S_IXOTH:
            return "/tmp"
        parent = os.path.dirname(path)
        if parent == path:
            return base
        path = parent


# Trust for the superuser's setup; -E/--locale so that the caller's locale does not matter
INITDB_OPTIONS = ("--auth-local=trust", "--auth-host=trust", "-E", "UTF8", "--locale=C")

HBA = f"""\
# Written by tests/pg_server.py
# TYPE  DATABASE  USER          ADDRESS        METHOD
local   all       all                          trust
host    all       {SUPERUSER:<13} 127.0.0.1/32   trust
host    all       all           127.0.0.1/32   scram-sha-256
"""


class PgServer:
    """A running PostgreSQL server in a temporary folder, for one test session.

    url(dbname, user, password)         -> a postgresql:// URL of this server
    create_database(name=None)          -> a fresh database's URL (unique name if none given)
    create_role(name, password, database=None)
                                        -> a LOGIN role with that password; with `database`,
                                           also granted CREATE on its schema public
    restart() / stop() / start()        -> pg_ctl, waiting until done
    log()                               -> the server's log, for failure messages
    close()                             -> stop at once (-m immediate) and remove the folder
    """

    def __init__(self, bindir: str | None = None):
        self.bindir = bindir or find_bindir()
        self.as_root = os.geteuid() == 0
        self.dir = tempfile.mkdtemp(prefix="rssd-pg-", dir=_base_folder())
        self.datadir = os.path.join(self.dir, "data")
        self.logfile = os.path.join(self.dir, "log")
        self.port = free_port()
        self._closed = False
        atexit.register(self.close)  # also when a session ends without its teardown
        try:
            if self.as_root:
                shutil.chown(self.dir, user=OS_USER, group=OS_USER)
            os.chmod(self.dir, 0o700)
            self._run("initdb", "-D", self.datadir, "-U", SUPERUSER, *INITDB_OPTIONS)
            with open(os.path.join(self.datadir, "pg_hba.conf"), "w") as f:
                f.write(HBA)
            with open(os.path.join(self.datadir, "postgresql.auto.conf"), "a") as f:
                f.write("password_encryption = 'scram-sha-256'\n")
            for attempt in range(3):  # another program may take the free port before we do
                try:
                    self.start()
                    break
                except RuntimeError:
                    if attempt == 2 or "could not bind" not in self.log():
                        raise
                    self.port = free_port()
        except BaseException:
            self.close()
            raise

    def _run(self, program: str, *args: str, timeout: float = TIMEOUT) -> str:
        """Run one of the server's programs (as the postgres OS user when we are root)."""
        cmd = [os.path.join(self.bindir, program), *args]
        if self.as_root:
            cmd = ["runuser", "-u", OS_USER, "--", *cmd]
        # PG* variables of the caller (PGDATA, PGPORT...) must not steer the server's programs
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(LC_ALL="C", LANG="C")
        try:
            done = subprocess.run(
                cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=self.dir
            )
        except subprocess.TimeoutExpired as e:
            raise RuntimeError(f"{program} took over {timeout}s\n{self.log()}") from e
        if done.returncode != 0:
            raise RuntimeError(
                f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}{done.stderr}\n"
                f"server log:\n{self.log()}"
            )
        return done.stdout

    def _options(self) -> str:
        """The postgres server's options (pg_ctl -o): our port, the socket in our folder."""
        socket_dir = shlex.quote(self.dir)
        return (
            f"-p {self.port} -k {socket_dir} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c max_connections=200"
        )

    def _pg_ctl(self, *args: str) -> None:
        """pg_ctl on our cluster, waiting (-w) at most TIMEOUT seconds for it to be done."""
        timeout = str(TIMEOUT)
        self._run(
            "pg_ctl", "-D", self.datadir, "-w", "-t", timeout, *args, timeout=2 * TIMEOUT + 10
        )

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        self._pg_ctl("-o", self._options(), "-l", self.logfile, "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (`mode` is pg_ctl's -m: smart, fast or immediate) and wait."""
        self._pg_ctl("-m", mode, "stop")

    def restart(self) -> None:
        """Restart the server (-m fast: open connections are ended), waiting until it is up."""
        self._pg_ctl("-o", self._options(), "-l", self.logfile, "-m", "fast", "restart")

    def running(self) -> bool:
        return os.path.exists(os.path.join(self.datadir, "postmaster.pid"))

    def close(self) -> None:
        """Stop the server at once and remove its folder; idempotent."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        try:
            if self.running():
                self.stop("immediate")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def log(self) -> str:
        """The server's log so far ('' if none)."""
        try:
            with open(self.logfile, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def url(
        self, dbname: str = "postgres", user: str = SUPERUSER, password: str | None = None
    ) -> str:
        """postgresql://user[:password]@127.0.0.1:PORT/dbname (each part percent-encoded)."""
        auth = quote(user, safe="")
        if password is not None:
            auth += ":" + quote(password, safe="")
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{quote(dbname, safe='')}"

    def _admin(self, dbname: str = "postgres"):
        """An autocommit connection of the superuser (psycopg is imported only here, so that
        conftest.py imports this module without it)."""
        import psycopg

        return psycopg.connect(self.url(dbname), autocommit=True, connect_timeout=TIMEOUT)

    def create_database(self, name: str | None = None) -> str:
        """CREATE DATABASE `name` (a fresh unique name if None), owned by postgres; its URL."""
        from psycopg import sql

        name = name or f"test_{uuid.uuid4().hex[:12]}"
        with self._admin() as con:
            con.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def create_role(self, name: str, password: str, database: str | None = None) -> None:
        """CREATE ROLE `name` LOGIN PASSWORD `password` (stored as scram-sha-256). With
        `database` (a name, not a URL), also GRANT CREATE ON SCHEMA public there (since
        PostgreSQL 15, only the database owner may create in public by default)."""
        from psycopg import sql

        with self._admin() as con:
            con.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(name), sql.Literal(password)
                )
            )
        if database is not None:
            with self._admin(database) as con:
                con.execute(
                    sql.SQL("GRANT CREATE ON SCHEMA public TO {}").format(sql.Identifier(name))
                )
