"""The uAPI numbers and layouts gmemtrace issues match include/uapi/linux/kvm.h."""

import ctypes

import pytest

from gmemtrace.kernel import kvm


@pytest.mark.parametrize(
    ("request_number", "expected"),
    [
        (kvm.KVM_CREATE_VM, 0xAE01),
        (kvm.KVM_CHECK_EXTENSION, 0xAE03),
        (kvm.KVM_RUN, 0xAE80),
        (kvm.KVM_CREATE_GUEST_MEMFD, 0xC040AED4),
        (kvm.KVM_SET_USER_MEMORY_REGION2, 0x40A0AE49),
        (kvm.KVM_SET_MEMORY_ATTRIBUTES, 0x4020AED2),
        (kvm.KVM_SET_MEMORY_ATTRIBUTES2, 0xC080AED2),
        (kvm.KVM_GMEM_CONVERT_SHARED, 0xC040AF41),
        (kvm.KVM_GMEM_CONVERT_PRIVATE, 0xC040AF42),
        (kvm.KVM_GET_SREGS, 0x8138AE83),
        (kvm.KVM_SET_REGS, 0x4090AE82),
    ],
)
def test_ioctl_numbers_match_the_kernel_headers(request_number: int, expected: int) -> None:
    assert request_number == expected


@pytest.mark.parametrize(
    ("struct", "size"),
    [
        (kvm.CreateGuestMemfd, 64),
        (kvm.UserspaceMemoryRegion2, 160),
        (kvm.MemoryAttributes, 32),
        (kvm.MemoryAttributes2, 128),
        (kvm.GmemConvert, 64),
        (kvm.Sregs, 312),
        (kvm.Regs, 144),
        (kvm.RunHeader, 32),
    ],
)
def test_struct_sizes(struct: type[ctypes.Structure], size: int) -> None:
    assert ctypes.sizeof(struct) == size


def test_gmem_flags_decode_known_and_unknown_bits() -> None:
    assert kvm.decode_gmem_flags(0) == []
    assert kvm.decode_gmem_flags(3) == ["MMAP", "INIT_SHARED"]
    assert kvm.decode_gmem_flags(1 | 8) == ["MMAP", "0x8"]


def test_failed_ioctl_raises_with_errno() -> None:
    with pytest.raises(kvm.KvmError) as caught:
        kvm.ioctl(-1, kvm.KVM_CHECK_EXTENSION, 0)
    assert caught.value.errno == 9  # EBADF, not a positive "success"
    assert kvm.try_ioctl(-1, kvm.KVM_CHECK_EXTENSION, 0) == 9
