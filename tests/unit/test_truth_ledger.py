"""The ledger turns operations into the faults, allocations and frees the kernel makes."""

from gmemtrace.kernel.uapi import GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_MMAP
from gmemtrace.workload.truth import InodeTruth

SHARED_FLAGS = GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED


def test_first_touch_faults_and_allocates_then_retouch_is_free() -> None:
    t = InodeTruth(ino=7, flags=SHARED_FLAGS, size_pages=16)
    t.host_touch(1, list(range(8)), pid=1)
    t.host_touch(1, list(range(8)), pid=1)
    assert t.counts["host_faults"] == 8
    assert t.counts["pages_allocated"] == 8


def test_zap_refaults_without_allocating() -> None:
    t = InodeTruth(ino=7, flags=SHARED_FLAGS, size_pages=16)
    t.host_touch(1, list(range(8)), pid=1)
    t.zap(1, 4, 4, pid=1)
    t.host_touch(1, list(range(8)), pid=1)
    assert t.counts["host_faults"] == 12
    assert t.counts["pages_allocated"] == 8


def test_punch_frees_resident_pages_only_and_unmaps_everywhere() -> None:
    t = InodeTruth(ino=7, flags=SHARED_FLAGS, size_pages=16)
    t.host_touch(1, [0, 1], pid=1)
    t.guest_touch([1], pid=1)
    t.punch(0, 4, pid=1)
    assert t.counts["pages_freed"] == 2
    assert t.counts["hole_punches"] == 1
    t.host_touch(1, [0], pid=1)
    t.guest_touch([1], pid=1)
    assert t.counts["host_faults"] == 3
    assert t.counts["guest_faults"] == 2
    assert t.counts["pages_allocated"] == 4


def test_second_mapping_faults_on_its_own() -> None:
    t = InodeTruth(ino=7, flags=SHARED_FLAGS, size_pages=4)
    t.host_touch(1, [0], pid=1)
    t.host_touch(2, [0], pid=1)
    assert t.counts["host_faults"] == 2
    assert t.counts["pages_allocated"] == 1


def test_failed_conversion_is_an_attempt_and_changes_nothing() -> None:
    t = InodeTruth(ino=7, flags=SHARED_FLAGS, size_pages=8)
    t.convert(0, 4, True, "KVM_SET_MEMORY_ATTRIBUTES2", 25, pid=1)
    assert t.counts["conversion_attempts"] == 1
    assert t.counts["conversions_to_private"] == 0
    assert t.shareability() == [{"first": 0, "count": 8, "state": "shared"}]


def test_successful_conversion_splits_the_shareability_map() -> None:
    t = InodeTruth(ino=7, flags=SHARED_FLAGS, size_pages=8)
    t.host_touch(1, [2], pid=1)
    t.convert(2, 3, True, "KVM_SET_MEMORY_ATTRIBUTES2", 0, pid=1)
    assert t.shareability() == [
        {"first": 0, "count": 2, "state": "shared"},
        {"first": 2, "count": 3, "state": "private"},
        {"first": 5, "count": 3, "state": "shared"},
    ]
    t.host_touch(1, [2], pid=1)  # the conversion unmapped it from the host
    assert t.counts["host_faults"] == 2
    assert t.counts["conversions_to_private"] == 1


def test_private_inode_starts_private_and_refusals_count() -> None:
    t = InodeTruth(ino=9, flags=GUEST_MEMFD_FLAG_MMAP, size_pages=4)
    t.host_refused(1, pid=5)
    assert t.init == "private"
    assert t.counts["host_faults_refused"] == 1
    assert t.ops[-1]["op"] == "host_fault_refused"


def test_release_frees_what_is_resident_and_remembers_it() -> None:
    t = InodeTruth(ino=7, flags=SHARED_FLAGS, size_pages=8)
    t.fallocate(0, 3, pid=1)
    t.host_touch(1, [6], pid=1)
    t.release(pid=1)
    doc = t.to_json()
    assert doc["counts"]["pages_freed"] == 4
    assert doc["resident_before_release"] == [[0, 3], [6, 1]]
    assert doc["flag_names"] == ["MMAP", "INIT_SHARED"]
