"""The journal's writer: appends each cell's records to this process's journal before the
kernel replies, and writes them into the RSSD from a background thread (see journal.py for
the journal itself, its format and its recovery). It reads journal's settings and calls its
functions through the module, so that they stay one in one place."""

import contextlib
import fcntl
import os
import sys
import threading
import time

from rssd_kernel import digests, journal


def _no_lease(**_):
    return contextlib.nullcontext()


class Writer:
    """Journals record batches and writes them into the RSSD from a background thread."""

    def __init__(self, con, database: str, hold=None):
        # `con` may be a function that makes the connection: called by the writer thread,
        # holding the file, when it first writes.
        self._connect = con if callable(con) else None
        self.con = None if callable(con) else con
        self.hold = hold or _no_lease  # takes the database file while writing (lease.py)
        self.path = journal.own_journal_path(database)
        self.fd: int | None = None
        self.warning: str | None = None
        self.keep = False  # the journal held records before we opened it: never truncate it
        if self.path:
            try:
                # Made and locked under a name recovery does not look at, then renamed: a
                # journal is never seen unlocked while its process lives.
                making = self.path + ".new"
                self.fd = os.open(making, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                fcntl.flock(self.fd, fcntl.LOCK_EX)  # alive: nobody else recovers it
                os.rename(making, self.path)
                self.keep = os.fstat(self.fd).st_size > 0
            except OSError as error:
                self.warning = self._lost_warning(error)
        self.pending: list[tuple[dict, int, bool]] = []  # (batch, size, in the journal)
        self.unjournaled = 0  # pending batches not in the journal (kept as a count: O(1))
        self.pending_bytes = 0
        self.spilled = False  # batches are in the journal only: read them back from it
        self.spills = 0
        self.last_submit = 0.0
        self.urgent = False  # someone waits in flush(): write now
        self.busy = False
        self.error: Exception | None = None
        self.retry_at = 0.0
        self.delay = journal.RETRY_MIN
        self.closed = False
        self.digesting = False  # a thread makes lineage digests (see _digests)
        self.held: set[int] = set()  # ids of digest batches not to be made yet (see submit)
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._loop, name="rssd-writer", daemon=True)
        self.thread.start()

    def _lost_warning(self, error: OSError) -> str:
        return (
            f"rssd: the journal {self.path} cannot be written ({error}); records are kept in "
            "memory until they are in the database, so a crash of the kernel before then "
            "would lose them."
        )

    def submit(self, batch: dict, held: bool = False, journaled_only: bool = False) -> bool:
        """Journal the batch (durable against a crash of this process), then queue it;
        True if it is in the journal. A batch of lineage digests is always queued (it is
        small), and made by the digest thread; `held`, not before `release_held()`: it is
        journaled before the commit of the cell that wrote its entries, and made once that
        cell is recorded (after its commit, whatever its outcome). `journaled_only`: a batch
        the journal cannot take is not queued either (the caller keeps it)."""
        record = journal.frame(batch)
        is_digests = digests.DIGESTS in batch
        with self.cond:
            idle = not self.pending and not self.spilled
            journaled = self._append(record)
            if journaled_only and not journaled:
                return False
            full = (
                len(self.pending) >= journal.MAX_PENDING
                or self.pending_bytes + len(record) > journal.MAX_PENDING_BYTES
            )
            if held:
                self.held.add(id(batch))
            if journaled and (self.spilled or full) and not is_digests:
                self.spilled, self.spills = True, self.spills + 1
            else:  # one that is not in the journal stays in memory, whatever the bound
                self.pending.append((batch, len(record), journaled))
                self.unjournaled += not journaled
                self.pending_bytes += len(record)
            self.last_submit = time.monotonic()
            if is_digests and not held and not self.digesting:
                self._start_digests()
            if idle:
                # Only an idle writer needs waking; one waiting for a pause between cells
                # looks at last_submit when its wait ends. (A wake-up per cell would take
                # the GIL from the cell's reply.)
                self.cond.notify_all()
            return journaled

    def release_held(self) -> None:
        """The cell that submitted `held` digest batches is recorded: let them be made."""
        if not self.held:  # the usual case, without taking the lock
            return
        with self.cond:
            self.held.clear()
            if not self.digesting:
                self._start_digests()

    def _append(self, record: bytes) -> bool:
        """Write the whole record to the journal (write(2) may write less than asked)."""
        if self.fd is None:
            return False
        view = memoryview(record)
        try:
            while view:
                written = os.write(self.fd, view)
                if written <= 0:
                    raise OSError("the journal took no bytes")
                view = view[written:]
        except OSError as error:
            self.warning = self._lost_warning(error)
            return False
        return True

    def flush(self, timeout: float = 30.0, check_stop=None, digests: bool = True) -> bool:
        """Wait at most `timeout` seconds until everything submitted is in the RSSD, lineage
        digests made and filled in too (unless not `digests`); True if it is, False on
        timeout or when a write failed (see take_error). `check_stop`, called every tenth of
        a second, may raise to stop waiting (the stop button: the signal handler that sets
        it cannot notify a condition)."""
        deadline = time.monotonic() + timeout
        waiting = self._unwritten if digests else self._has_work
        with self.cond:
            self.urgent = True
            self.cond.notify_all()
            while waiting() and self.error is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                if check_stop is None:
                    self.cond.wait(remaining)
                else:
                    self.cond.wait(min(remaining, 0.1))
                    check_stop()
            return not waiting()

    def _unwritten(self) -> bool:
        """Holding the lock: whether anything submitted is not in the RSSD yet (a held
        digest batch aside: nothing waits for one while its cell runs)."""
        return self.busy or self.spilled or any(id(b) not in self.held for b, _, _ in self.pending)

    def _has_work(self) -> bool:
        """Holding the lock: whether something can be written now (or is being written):
        a batch waiting only for its lineage digests to be made is not."""
        return self.busy or self.spilled or any(digests.made(b) for b, _, _ in self.pending)

    def note(self, record: dict) -> None:
        """Append a session record (not rows) to the journal only."""
        with self.cond:
            self._append(journal.frame(record))

    def overloaded(self) -> bool:
        """Whether MAX_PENDING records wait in memory only (neither the journal nor the
        database could take them): the runner then refuses cells until they can."""
        return self.unjournaled >= journal.MAX_PENDING  # one read: no lock needed

    def has_work(self) -> bool:
        """Whether records wait to be written (the file must not be let go before). Lineage
        digests being made do not count: the file is taken again to fill them in."""
        with self.cond:
            return self._has_work()

    def hurry(self) -> None:
        """Write what is pending now, without waiting for a pause between cells."""
        with self.cond:
            self.urgent = True
            self.cond.notify_all()

    def take_error(self) -> Exception | None:
        """The error of the last failed write, if it has not been retried successfully yet;
        taking it makes the writer retry now."""
        if self.error is None:  # the usual case, without taking the lock
            return None
        with self.cond:
            error, self.error = self.error, None
            if error is not None:
                self.retry_at = 0.0
                self.cond.notify_all()
            return error

    def take_warning(self) -> str | None:
        """A sentence to show the user when the journal could not be written, once."""
        if self.warning is None:
            return None
        with self.cond:
            warning, self.warning = self.warning, None
            return warning

    def _wait_for_work(self) -> bool:
        """Holding the lock, wait until something is due to be written; False: stop."""
        while True:
            work = self._has_work()
            # Closed: stop when nothing can be written (digests still being made are left
            # to the journal), or on an error (what is left stays in the journal).
            if self.closed and (self.error is not None or not work):
                return False
            delay = self.retry_at - time.monotonic()
            if work and delay <= 0:
                return True
            self.cond.wait(delay if work else None)

    def _loop(self) -> None:
        while True:
            with self.cond:
                if not self._wait_for_work():
                    return
                # Wait for a pause between cells (or at most MAX_AGE) before writing, so the
                # write neither competes with the reply of the cell that just ran nor costs a
                # commit per cell when cells come back to back.
                first = time.monotonic()
                while not self.urgent and not self.closed:
                    remaining = (
                        min(self.last_submit + journal.PAUSE, first + journal.MAX_AGE)
                        - time.monotonic()
                    )
                    if remaining <= 0:
                        break
                    self.cond.wait(remaining)
                self.urgent = False
                batches = [b for b, _, _ in self.pending if digests.made(b)]
                from_file, spills, self.busy = self.spilled, self.spills, True
            try:
                with self.hold(wait_s=float("inf")):  # records wait as long as it takes
                    if self.con is None:
                        self.con = self._connect()
                    # (digest batches are all pending: the digest thread makes them)
                    replayed = journal.replay(self.con, self.path, False) if from_file else None
                    orphaned = replayed[1] if replayed else 0
                    missing = journal._absent(self.con, batches) if batches else []
                    if missing:
                        journal.write_batches(self.con, missing)
                failure = None
            except Exception as error:  # disk full, say: keep the batches, report, retry
                failure = error
            with self.cond:
                self.busy = False
                if failure is None:
                    self._written(batches, from_file and spills == self.spills, orphaned)
                else:
                    self.error = failure
                    self.retry_at = time.monotonic() + self.delay
                    self.delay = min(self.delay * 2, journal.RETRY_MAX)
                self.cond.notify_all()

    def _start_digests(self) -> None:
        """Holding the lock: start the thread that makes the lineage digests of pending
        batches (digests.make), one batch at a time. It runs at the lowest priority
        (nice 19: the next cell, an ingest say, goes first) and holds neither the lock nor the
        file while it hashes; the writer writes whatever is ready meanwhile."""
        self.digesting = True
        threading.Thread(target=self._digests, name="rssd-digests", daemon=True).start()

    def _digests(self) -> None:
        if sys.platform == "linux":  # where a thread's id names the thread alone
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        try:
            while True:
                with self.cond:
                    # After a pause between cells, as the writer: the hashing must not
                    # compete with the reply of the cell that asked for it.
                    while not self.urgent and not self.closed:
                        remaining = self.last_submit + journal.PAUSE - time.monotonic()
                        if remaining <= 0:
                            break
                        self.cond.wait(remaining)
                    waiting = [b for b, _, _ in self.pending if self._to_digest(b)]
                    if not waiting or self.closed:  # closed: the journal keeps the rest
                        self.digesting = False  # under the same lock as submit's look at it
                        return
                digests.make(waiting[:1])  # a failure is recorded, not raised
                with self.cond:
                    self.cond.notify_all()
        except BaseException:  # even on MemoryError: the next batch starts a thread again
            with self.cond:
                self.digesting = False
                self.cond.notify_all()
            raise

    def _to_digest(self, batch: dict) -> bool:
        return id(batch) not in self.held and not digests.made(batch)

    def _written(self, batches: list[dict], file_done: bool, orphaned: int) -> None:
        """Holding the lock: forget the batches written; empty the journal if it holds
        nothing else (records appended meanwhile are pending, or spilled since the pass
        began; batches waiting for their lineage digests are pending)."""
        done = {id(batch) for batch in batches}
        written = [item for item in self.pending if id(item[0]) in done]
        self.pending = [item for item in self.pending if id(item[0]) not in done]
        self.pending_bytes -= sum(size for _, size, _ in written)
        self.unjournaled -= sum(not journaled for _, _, journaled in written)
        self.spilled = self.spilled and not file_done
        self.keep = self.keep or orphaned > 0
        self.error, self.delay = None, journal.RETRY_MIN
        if not self.pending and not self.spilled and self.fd is not None and not self.keep:
            try:
                os.ftruncate(self.fd, 0)
            except OSError:
                pass  # the next recovery skips what is already in the RSSD

    def close(self, timeout: float = 30.0, digests_s: float | None = None) -> bool:
        """Write what is pending (for at most about `timeout` seconds) and stop the thread;
        lineage digests still being made are waited for `digests_s` seconds at most (all of
        `timeout` if None). Whatever is not written (and every digest not made) stays in the
        journal for the next kernel's recovery. True when everything was written."""
        deadline = time.monotonic() + timeout
        done = self.flush(timeout, digests=False)
        if digests_s is None or digests_s > 0:
            wait = max(0.0, deadline - time.monotonic())
            done = self.flush(wait if digests_s is None else min(wait, digests_s)) and done
        with self.cond:
            self.closed = True
            for index, (batch, size, journaled) in enumerate(self.pending):
                if not journaled and self._append(
                    journal.frame(batch)
                ):  # the disk may have room now
                    self.pending[index] = (batch, size, True)
                    self.unjournaled -= 1
            self.cond.notify_all()
        self.thread.join(max(0.0, deadline - time.monotonic()))
        with self.cond:
            fd, self.fd = self.fd, None
        if not self.thread.is_alive() and self.con is not None:  # else it is stuck in a write
            self.con.close()
        if fd is not None:
            os.close(fd)
            try:
                if os.path.getsize(self.path) == 0:
                    os.unlink(self.path)
            except OSError:
                pass
        return done
