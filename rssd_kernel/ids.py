"""Identifiers in surveilr's style: ULIDs for VARCHAR keys, UUIDs where the DDL says UUID.

Both are time-ordered, so sorting by id sorts by creation time; the exec table has no
timestamp column of its own and relies on that.
"""

import os
import random
import threading
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_lock = threading.Lock()
# Ids need to be unique, not unguessable: a generator seeded once from the OS is enough,
# and saves a system call per id (several per cell).
_random = random.Random(os.urandom(32))


class _Sequence:
    """48 bits of milliseconds, then `bits` random bits; strictly increasing in this process,
    so two ids made in the same millisecond still sort in the order they were made."""

    def __init__(self, bits: int):
        self.bits = bits
        self.last = 0

    def next(self) -> int:
        value = (time.time_ns() // 1_000_000) << self.bits | _random.getrandbits(self.bits)
        with _lock:
            if value <= self.last:
                value = self.last + 1
            self.last = value
        return value


_ULIDS = _Sequence(80)
_UUIDS = _Sequence(74)  # a UUID's other 6 bits are its version and variant


def ulid() -> str:
    """A 26-character ULID (Crockford base32)."""
    value = _ULIDS.next()
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def uuid7() -> str:
    """A version-7 UUID (RFC 9562): milliseconds, version, 12 bits, variant, 62 bits. The
    sequence's value is laid around the version and variant bits, not under them, so the
    UUIDs keep its order."""
    value = _UUIDS.next()
    value = (
        (value >> 74) << 80  # milliseconds
        | 0x7 << 76  # version 7
        | ((value >> 62) & 0xFFF) << 64
        | 0x2 << 62  # RFC 4122 variant
        | value & ((1 << 62) - 1)
    )
    digits = f"{value:032x}"  # as str(uuid.UUID(int=value)), without its checks
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"
