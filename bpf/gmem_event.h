/* The one record every gmemtrace BPF program emits. Mirrored by
 * gmemtrace/events.py (EVENT_DTYPE); tests tie the two sizes together. */
#ifndef GMEM_EVENT_H
#define GMEM_EVENT_H

/* Field names per kind, as gmemtrace/events.py FIELDS names them ("column = name");
 * ino, first (a page index) and count (pages) mean the same for every kind. */
enum gmem_event_kind {
    EV_CREATE = 1,             /* count = size_pages, arg = gmem_flags, arg2 = dev */
    EV_BIND = 2,               /* first, count: the pages bound; arg = gpa, arg2 = slot */
    EV_HOST_FAULT = 3,         /* count > 1: a run of consecutive pages; flags = error_code,
                                  arg = address (a run's first page's), arg2 = asid */
    EV_HOST_FAULT_REFUSED = 4, /* SIGBUS: arg = address; flags = access (ACCESS_*) */
    EV_GUEST_FAULT = 5,        /* flags GUEST_FAULT_*: TIMED (kvm_gmem_get_pfn, with result;
                                  arg = gpa, arg2 = latency_ns), BY_GPA (kvm_page_fault; ino 0,
                                  first = the gfn, arg = gpa, arg2 = error_code), neither (a page
                                  allocated inside KVM_RUN) */
    EV_ALLOC = 6,              /* a folio, or a run of pages */
    EV_FREE = 7,               /* a folio, or a run of pages */
    EV_PUNCH = 8,              /* result; flags = mode, arg = latency_ns */
    EV_FALLOCATE = 9,          /* result; flags = mode, arg = latency_ns */
    EV_CONVERT = 10,           /* ino (0: by gpa, first = the gfn); flags = CONV_*, arg = gpa
                                  (with CONV_BLOCKED arg = blocking_page), arg2 = latency_ns */
    EV_MEMORY_FAULT_EXIT = 11, /* KVM_EXIT_MEMORY_FAULT: first = the gfn, count = pages;
                                  flags = exit_flags, arg = gpa, arg2 = size (bytes; 0: unknown) */
    EV_SHAREABILITY_SETUP = 12, /* a new inode's pages [first, first + count): flags = private
                                   (1: private, 0: shared), arg = gmem_flags */
    EV_RELEASE = 13,           /* the last close: count = size_pages */
    EV_MMAP = 14,              /* arg = address, arg2 = asid (address space id) */
    EV_MUNMAP = 15,            /* arg = address, arg2 = asid */
    EV_MREMAP = 16,            /* arg = address (the new one), arg2 = old_address */
    EV_FORK = 17,              /* arg = child, arg2 = asid */
    EV_EXEC = 18,              /* arg2 = asid (the new one) */
    EV_LOST = 19,              /* written by the collector: count = lost_total (so far),
                                  arg = since_ns, arg2 = refused_total (of those, lost
                                  though the ring had room) */
    EV_END = 20,               /* a clean end of the recording (written by the collector) */
    EV_COUNTED = 21,           /* written by the collector from the kernel's counts: `count`
                                  events by pid, tid on ino; arg = counted_kind (their flags
                                  in flags) */
    EV_PAGE_STATE = 22,        /* written by the collector from the kernel's page bits: pages
                                  [first, first + count) of ino; flags = state (PAGES_*) */
};

/* EV_GUEST_FAULT flags: where the fault was seen. */
#define GUEST_FAULT_TIMED 0x1  /* kvm_gmem_get_pfn, with its result and latency */
#define GUEST_FAULT_BY_GPA 0x2 /* kvm:kvm_page_fault: by guest physical address */

/* EV_PAGE_STATE flags: what the pages are (and how gmem_shared.c marks them). */
#define PAGES_FAULTED 0  /* faulted by the host in the read generation that ended */
#define PAGES_RESIDENT 1 /* in the page cache */
#define PAGES_GONE 2     /* no longer in it */

/* EV_HOST_FAULT_REFUSED flags: the access refused, where the probe tells. */
#define ACCESS_KNOWN 0x1
#define ACCESS_WRITE 0x2

/* EV_CONVERT flags: direction and interface. */
#define CONV_TO_PRIVATE 0x1
#define CONV_BLOCKED 0x2 /* refused: arg = the page that blocked it (error_offset) */
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
