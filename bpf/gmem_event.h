/* The one record every gmemtrace BPF program emits. Mirrored by
 * gmemtrace/events.py (EVENT_DTYPE); tests tie the two sizes together. */
#ifndef GMEM_EVENT_H
#define GMEM_EVENT_H

enum gmem_event_kind {
    EV_CREATE = 1,             /* ino, count = size in pages, arg = flags */
    EV_BIND = 2,               /* ino, first, count; arg = gpa, arg2 = slot */
    EV_HOST_FAULT = 3,         /* ino, first, count (> 1: a run of consecutive pages);
                                  arg = address (a run's: its first page's), flags = error code */
    EV_HOST_FAULT_REFUSED = 4, /* ino, first; arg = address (SIGBUS) */
    EV_GUEST_FAULT = 5,        /* ino, first, count; flags GUEST_FAULT_*: TIMED (kvm_gmem_get_pfn:
                                  result, arg = gpa, arg2 = latency ns), BY_GPA (kvm_page_fault:
                                  ino 0, first = gfn, arg = gpa, arg2 = error code), neither
                                  (a page allocated inside KVM_RUN) */
    EV_ALLOC = 6,              /* ino, first, count (a folio, or a run of pages) */
    EV_FREE = 7,               /* ino, first, count (a folio, or a run of pages) */
    EV_PUNCH = 8,              /* ino, first, count, result */
    EV_FALLOCATE = 9,          /* ino, first, count, result */
    EV_CONVERT = 10,           /* ino (0: by gpa), first, count, arg = gpa, arg2 = latency ns,
                                  flags = CONV_* */
    EV_MEMORY_FAULT_EXIT = 11, /* KVM_EXIT_MEMORY_FAULT: first = gfn, count = pages, arg = gpa,
                                  arg2 = size (bytes; 0: unknown), flags = exit flags */
    EV_SHAREABILITY_SETUP = 12,
    EV_RELEASE = 13,           /* ino, count = size in pages: the last close */
    EV_MMAP = 14,              /* ino, first, count; arg = address, arg2 = address space id */
    EV_MUNMAP = 15,            /* count = pages; arg = address, arg2 = address space id */
    EV_MREMAP = 16,            /* ino, first, count; arg = new address, arg2 = old address */
    EV_FORK = 17,              /* arg = child pid, arg2 = address space id */
    EV_EXEC = 18,              /* arg2 = new address space id */
    EV_LOST = 19,              /* count = events lost so far (written by the collector) */
    EV_END = 20,               /* a clean end of the recording (written by the collector) */
};

/* EV_GUEST_FAULT flags: where the fault was seen. */
#define GUEST_FAULT_TIMED 0x1  /* kvm_gmem_get_pfn, with its result and latency */
#define GUEST_FAULT_BY_GPA 0x2 /* kvm:kvm_page_fault: by guest physical address */

/* EV_CONVERT flags: direction and interface. */
#define CONV_TO_PRIVATE 0x1
#define CONV_IFACE_ATTRIBUTES2 0x10 /* KVM_SET_MEMORY_ATTRIBUTES2 on the guest_memfd */
#define CONV_IFACE_VM_ATTRIBUTES 0x20 /* KVM_SET_MEMORY_ATTRIBUTES on the VM, by gpa */
#define CONV_IFACE_GMEM_CONVERT 0x40 /* KVM_GMEM_CONVERT_* (May 2025 RFC) */

struct gmem_event {
    u64 ts_ns;      /* CLOCK_MONOTONIC */
    u32 pid;        /* thread group id */
    u32 tid;
    u16 kind;
    u16 flags;
    s32 result;     /* 0 or -errno */
    u64 ino;
    u64 first;      /* page index */
    u64 count;      /* pages */
    u64 arg;
    u64 arg2;
    char comm[16];
};

#endif
