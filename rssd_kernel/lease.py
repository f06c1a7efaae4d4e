"""Holding the database file only while working, so that several processes share it.

DuckDB lets one process at a time open a file. So the kernel keeps its session (TEMP
tables, SET, SET VARIABLE, prepared statements, named results, ATTACHed databases) in an
in-memory DuckDB database of its own, `rssd_session`, and ATTACHes the file only while it
works: a cell, a completion that needs the catalog, the RSSD writer. The file keeps the
name DuckDB would give it (`rssd` for rssd.duckdb), and every connection of the kernel
keeps it as its default database, so qualified names and `USE` keep working.

When is the file let go? When nobody in this process uses it, and either another process
waits for it (a waiting process announces itself with a marker file beside the database,
`<db>.rssd-wait.<pid>`, which an idle holder notices within a tenth of a second) or it has
been idle for `hold_s` seconds (for readers that cannot announce themselves: DuckDB's own
CLI, another tool). A single user keeps DuckDB's warm buffers and pays nothing. It is never
let go while something pins it: a transaction the user opened (DuckDB would let DETACH
through even then), or records the RSSD writer has not written yet.

Who waits: a process that finds the file held retries ATTACH every 50 ms; after half a
second it reports who holds it (the PID from DuckDB's lock error, and the notebook from the
holder's `<db>.rssd-holder` note, when that process is an rssd kernel of this release). The
stop button ends the wait (`check_stop`), and `wait_s` bounds it.
"""

import contextlib
import glob
import json
import os
import re
import threading
import time

import duckdb

from rssd_kernel.errors import DatabaseLocked, DatabaseUnavailable

SESSION_DB = "rssd_session"
WAIT_SUFFIX = ".rssd-wait."
HOLDER_SUFFIX = ".rssd-holder"
POLL = 0.05  # seconds between two tries of a held file
HAND_OVER = 1.0  # seconds a process that yielded the file lets a waiter take it first
NOTICE = 0.1  # how often an idle holder looks for waiting processes
_PID = re.compile(r"\(PID (\d+)\)")


def session_instance() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB whose default database is `rssd_session`, not `memory`, so that
    a file named memory.duckdb keeps its own name when attached."""
    con = duckdb.connect(":memory:")
    con.execute(f"ATTACH ':memory:' AS {SESSION_DB}").fetchall()
    con.execute(f"USE {SESSION_DB}").fetchall()
    con.execute("DETACH memory").fetchall()
    return con


def is_lock_error(error: Exception) -> bool:
    text = str(error)
    return "Could not set lock" in text or "Conflicting lock" in text


class Lease:
    """Attaches the database file on demand and lets it go when idle (module docstring).

    `hold()` is a context manager; holds nest and may come from several threads. The
    callbacks: `on_attach()` runs (file held) each time the file is taken again; `pinned()`
    returns a reason not to let it go, or None.
    """

    def __init__(self, path: str, instance, settings):
        self.path = os.path.abspath(path)
        self.instance = instance
        self.settings = settings  # hold_s and wait_s, read each time (%config changes them)
        self.alias: str | None = None
        self.on_attach = lambda: None
        self.pinned = lambda: None
        self.waiting_for: str | None = None  # what a waiting hold shows the user
        self.notebook: str | None = None
        self._admin = instance.cursor()  # ATTACH and DETACH only; its default stays ours
        self._cond = threading.Condition()
        self._users = 0
        self._attached = False
        self._attaching = False
        self._last_used = time.monotonic()
        self._closed = False
        self._released = None  # the file's and WAL's (size, mtime) when we let it go
        self._noted_why = None
        self.someone_waits = False  # seen by the watcher: another process waits for the file
        self._yielded = False  # we let the file go for a waiter: let it take it first
        self.unchanged_since_release = False
        self._thread = threading.Thread(target=self._watch, name="rssd-lease", daemon=True)
        self._thread.start()

    # -- taking the file ------------------------------------------------------------------

    @contextlib.contextmanager
    def hold(self, check_stop=None, wait_s: float | None = None):
        """Hold the file for the block, taking it (and waiting for it) if needed."""
        limit = self.settings.wait_s if wait_s is None else wait_s
        with self._cond:
            if self._closed:
                raise DatabaseUnavailable("This kernel's session on the file has ended.")
            started = time.monotonic()
            while self._attaching:  # another thread of ours is taking it: wait for that
                self._cond.wait(POLL)
                if check_stop is not None:
                    check_stop()
                if time.monotonic() - started >= limit:
                    holder = (self.waiting_for or "").split(": ", 1)[-1]
                    raise _locked(self.path, limit, holder or "held by another process")
            if not self._attached:
                self._attaching = True
                try:
                    self._attach(check_stop, limit)
                finally:
                    self._attaching = False
                    self._cond.notify_all()
            self._users += 1
        try:
            yield self
        finally:
            with self._cond:
                self._users -= 1
                self._last_used = time.monotonic()
                if self.someone_waits and not self._users:
                    # Wake the watcher to let the file go now. Otherwise it looks again
                    # within NOTICE by itself: waking it after every cell would hand it the
                    # GIL in the middle of the cell's reply.
                    self._cond.notify_all()

    @property
    def attached(self) -> bool:
        return self._attached

    def _attach(self, check_stop, wait_s: float) -> None:
        started = time.monotonic()
        marker = None
        self._make_way(started)
        try:
            while True:
                if self._closed:
                    raise DatabaseUnavailable("This kernel's session on the file has ended.")
                # Taken just before each try: what the file looked like when we got it.
                stat = _stat(self.path)
                try:
                    name = f" AS {_quote(self.alias)}" if self.alias else ""
                    self._admin.execute(f"ATTACH {_literal(self.path)}{name}").fetchall()
                    break
                except duckdb.Error as error:
                    if not is_lock_error(error):
                        from rssd_kernel.database import describe_open_error

                        raise describe_open_error(self.path, error) from None
                    waited = time.monotonic() - started
                    if marker is None:
                        marker = self._announce()  # an idle rssd holder lets go on seeing it
                    holder = describe_holder(self.path, str(error))
                    if waited >= 0.5:
                        self.waiting_for = f"waiting for {self.path}: {holder}"
                    if waited >= wait_s:
                        raise _locked(self.path, waited, holder) from None
                    if check_stop is not None:
                        check_stop()
                    self._cond.wait(POLL)
        finally:
            self.waiting_for = None
            if marker is not None:
                _remove(marker)
        self.unchanged_since_release = self._released is not None and self._released == stat
        if self.alias is None:
            ((self.alias,),) = self._admin.execute(
                "SELECT database_name FROM duckdb_databases() WHERE path = ?", [self.path]
            ).fetchall()
        self._attached = True
        self._noted_why = None
        self._note_holder()
        try:
            self.on_attach()
        except BaseException:
            self._detach()
            raise

    def _announce(self) -> str | None:
        try:
            return self._announce_for(self.path, self.notebook)
        except OSError:
            return None  # a read-only folder: holders let go after hold_s instead

    def _make_way(self, started: float) -> None:
        """After this process let the file go for a waiting one, give it the chance to
        take it before trying again (else a kernel with cells back to back would always
        win the race)."""
        if not self._yielded:
            return
        self._yielded = False
        while waiting(self.path) and time.monotonic() - started < HAND_OVER:
            self._cond.wait(POLL)

    def yield_to_waiters(self) -> bool:
        """Let the file go now if another process waits for it and nothing of ours holds or
        pins it (called between cells). True if it was let go."""
        with self._cond:
            if not (self._attached and self.someone_waits) or self._users:
                return False
            if self.pinned() is not None:
                return False
            self._detach()
            self._yielded = True
            return True

    @staticmethod
    def _announce_for(path: str, notebook: str | None) -> str:
        marker = f"{path}{WAIT_SUFFIX}{os.getpid()}"
        with open(marker, "w") as handle:
            handle.write(json.dumps({"pid": os.getpid(), "notebook": notebook}))
        return marker

    def _forget_holder_note(self) -> None:
        try:
            with open(self.path + HOLDER_SUFFIX) as handle:
                mine = json.loads(handle.read()).get("pid") == os.getpid()
        except (OSError, ValueError):
            return
        if mine:
            _remove(self.path + HOLDER_SUFFIX)

    def _note_holder(self, why: str | None = None) -> None:
        """Tell waiting processes who holds the file, and why it is not let go yet."""
        note = {"pid": os.getpid(), "notebook": self.notebook, "since": time.time(), "why": why}
        try:
            with open(self.path + HOLDER_SUFFIX, "w") as handle:
                handle.write(json.dumps(note))
        except OSError:
            pass  # only a courtesy to waiting processes

    # -- letting it go --------------------------------------------------------------------

    def _watch(self) -> None:
        while True:
            with self._cond:
                self._cond.wait(NOTICE)
                if self._closed:
                    return
                if not self._attached or self._users or self._attaching:
                    continue
                idle = time.monotonic() - self._last_used
                self.someone_waits = waiting(self.path)
                if not (idle >= self.settings.hold_s or self.someone_waits):
                    continue
                why = self.pinned()
                if why != self._noted_why:  # waiting processes see why, not just "busy"
                    self._noted_why = why
                    self._note_holder(why)
                if why is not None:
                    continue
                try:
                    self._detach()
                except Exception:  # noqa: BLE001 - kept held; tried again on the next notice
                    pass

    def _detach(self) -> None:
        """Let the file go (the lock held, no user of ours)."""
        self._forget_holder_note()  # before DETACH: the next holder writes its own
        self._admin.execute(f"DETACH {_quote(self.alias)}").fetchall()
        self._attached = False
        self._released = _stat(self.path)

    def release(self) -> None:
        """Let the file go now if nobody of ours holds it (at shutdown)."""
        with self._cond:
            if self._attached and not self._users:
                self._detach()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=5)
        self.release()


def open_waiting(path: str, read_only: bool = False, wait_s: float = 600.0, on_wait=None):
    """`duckdb.connect(path)`, waiting while another process holds the file (announced, as
    a kernel waits: an idle rssd kernel lets it go at once). `on_wait(text)` is called once,
    after half a second, with who holds it. Raises DatabaseLocked after `wait_s` seconds."""
    from rssd_kernel.database import describe_open_error

    path = os.path.abspath(path)
    started, marker, told = time.monotonic(), None, False
    try:
        while True:
            try:
                return duckdb.connect(path, read_only=read_only)
            except duckdb.Error as error:
                if not is_lock_error(error):
                    raise describe_open_error(path, error) from None
                waited = time.monotonic() - started
                holder = describe_holder(path, str(error))
                if waited >= wait_s:
                    raise DatabaseLocked(
                        f"The database {path} stayed in use for {waited:.0f} s: {holder}.",
                        "Try again when that process is idle or has ended, or stop it.",
                    ) from None
                if marker is None:
                    marker = Lease._announce_for(path, None)
                if waited >= 0.5 and not told and on_wait is not None:
                    on_wait(f"waiting for {path}: {holder}")
                    told = True
                time.sleep(POLL)  # nothing to wake us: the other process shows no event
    finally:
        if marker is not None:
            _remove(marker)


def waiting(path: str) -> bool:
    """Whether another live process announced that it waits for the file."""
    found = False
    for marker in glob.glob(glob.escape(path) + WAIT_SUFFIX + "*"):
        pid = marker.rsplit(".", 1)[-1]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        if _alive(int(pid)):
            found = True
        else:
            _remove(marker)  # left by a process that was killed while it waited
    return found


def describe_holder(path: str, error_text: str) -> str:
    """'held by PID 123 (notebook a.ipynb)', from DuckDB's lock error and the holder note."""
    found = _PID.search(error_text)
    pid = int(found.group(1)) if found else None
    note = {}
    try:
        with open(path + HOLDER_SUFFIX) as handle:
            note = json.loads(handle.read())
    except (OSError, ValueError):
        pass
    if pid is None:
        return "held by another process"
    if note.get("pid") != pid:
        return (f"held by PID {pid}, which is not an rssd kernel that lets the file go when "
                "idle (an older rssd-kernel, DuckDB's CLI, or another program)")  # fmt: skip
    notebook = note.get("notebook")
    who = f"held by PID {pid}" + (f" (notebook {notebook})" if notebook else "")
    return who + (f": {note['why']} there" if note.get("why") else ", busy")


def _locked(path: str, waited: float, holder: str) -> DatabaseLocked:
    from rssd_kernel.database import WAYS_OUT

    return DatabaseLocked(
        f"The database {path} stayed in use for {waited:.0f} s: {holder}.",
        "Run the cell again when that process is idle or has ended (or stop it; `%config "
        f"wait_s=...` sets how long a cell waits). Or: {WAYS_OUT}",
    )


def _stat(path: str) -> tuple:
    """What tells whether another process wrote the file: size and mtime of it and its WAL."""
    out = []
    for name in (path, path + ".wal"):
        try:
            info = os.stat(name)
            out.append((info.st_size, info.st_mtime_ns))
        except OSError:
            out.append(None)
    return tuple(out)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _remove(path: str) -> None:
    with contextlib.suppress(OSError):
        os.remove(path)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
