"""Identifiers in surveilr's style: ULIDs for VARCHAR keys, UUIDs where the DDL says UUID.

Both are time-ordered, so sorting by id sorts by creation time; the exec table has no
timestamp column of its own and relies on that.
"""

import os
import random
import threading
import time
import uuid

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_lock = threading.Lock()
_last = 0
# Ids need to be unique, not unguessable: a generator seeded once from the OS is enough,
# and saves a system call per id (several per cell).
_random = random.Random(os.urandom(32))


def _monotonic_128() -> int:
    """48 bits of milliseconds, then 80 random bits; strictly increasing in this process,
    so two ids made in the same millisecond still sort in the order they were made."""
    global _last
    value = (time.time_ns() // 1_000_000) << 80 | _random.getrandbits(80)
    with _lock:
        if value <= _last:
            value = _last + 1
        _last = value
    return value


def ulid() -> str:
    """A 26-character ULID (Crockford base32)."""
    value = _monotonic_128()
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def uuid7() -> str:
    """A version-7 UUID (RFC 9562): millisecond timestamp first, so it sorts by time."""
    value = _monotonic_128()
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
    return str(uuid.UUID(int=value))
