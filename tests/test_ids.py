"""Ids in surveilr's style: UUIDv7 and ULIDs, valid and sorted in the order they were made."""

import time
import uuid

from rssd_kernel.ids import ulid, uuid7


def test_uuid7_is_a_valid_version_7_uuid_in_canonical_form():
    for _ in range(1000):
        text = uuid7()
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 7 and parsed.variant == uuid.RFC_4122


def test_ids_sort_in_the_order_they_were_made():
    made = [uuid7() for _ in range(2000)]
    assert sorted(made) == made and len(set(made)) == len(made)
    made = [ulid() for _ in range(2000)]
    assert sorted(made) == made and len(set(made)) == len(made)
    assert all(len(u) == 26 for u in made)


def test_uuid7_starts_with_the_time_it_was_made_in_milliseconds():
    before = time.time_ns() // 1_000_000
    made = int(uuid7().replace("-", "")[:12], 16)
    assert before <= made <= time.time_ns() // 1_000_000
