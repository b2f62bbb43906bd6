/* Maps and helpers shared by every gmemtrace BPF program (bpf/gmem_*.c).
 * Defines from Python: OFF_* (struct offsets from BTF), RINGBUF_PAGES.
 * The loader (gmemtrace/probes/bcc_backend.py) compiles this file and the
 * program as one text: bcc rewrites map calls only in its main source. */
#ifndef GMEM_COMMON_H
#define GMEM_COMMON_H

#include <uapi/linux/ptrace.h>

#include "gmem_event.h"

#define PAGE_SHIFT_ 12
#define FALLOC_FL_PUNCH_HOLE_ 0x02

/* Pages covering `bytes` bytes. */
static __always_inline u64 pages_up(u64 bytes)
{
    return (bytes + (1ULL << PAGE_SHIFT_) - 1) >> PAGE_SHIFT_;
}
#define BPF_RB_NO_WAKEUP_ 1

struct config {
    u32 trace_all;   /* no pid filter: every process is a target */
    u32 stream_hot;  /* one record per hot event; 0: counted in maps (gmem_shared.c) */
    u32 next_asid;   /* address space ids handed out at exec */
    u32 attr_gen;    /* bumped when a mapping or an address space id changes (tracepoint tier) */
    u32 run_gen;     /* bumped when a thread enters or leaves KVM_RUN (tracepoint tier) */
    u32 kvm_faults_seen; /* kvm:kvm_page_fault fires on this kernel (tracepoint tier) */
    u32 follow_comm; /* a process that execs into the name `comm` becomes a target */
    char comm[16];   /* --comm, NUL-padded as the kernel keeps task names */
};

/* The ring buffer is the first map declared: bcc numbers maps in the order of their
 * declaration, and bpf_ringbuf_query(), which its rewriter offers no method for,
 * reaches it as map -1 (another map there would fail the verifier, never quietly). */
BPF_RINGBUF_OUTPUT(events, RINGBUF_PAGES);
#define EVENTS_RING ((void *)bpf_pseudo_fd(1, -1))
#define BPF_RB_AVAIL_DATA_ 0
#define BPF_RB_RING_SIZE_ 1

BPF_ARRAY(config, struct config, 1);
BPF_HASH(targets, u32, u32, 65536);          /* tgid -> address space id */
BPF_HASH(gmem_inodes, u64, u64, 65536);      /* ino -> s_dev (kernel encoding) */

/* Events lost, by why, told apart when a reservation fails (a failure costs two
 * queries; success nothing): gmemtrace/probes/tracepoints.py reads both. */
#define LOST_RING_FULL 0 /* no room for the record: the consumer is behind */
#define LOST_REFUSED 1   /* room enough, but refused (since 6.15 the ring's lock can give up) */
BPF_PERCPU_ARRAY(lost, u64, 2);


static __always_inline struct config *cfg(void)
{
    u32 zero = 0;
    return config.lookup(&zero);
}

/* The address space id of a traced process; 0 when it is not traced. */
static __always_inline u32 traced_asid(u32 tgid)
{
    u32 *asid = targets.lookup(&tgid);
    if (asid)
        return *asid;
    struct config *c = cfg();
    return (c && c->trace_all) ? tgid : 0;
}

/* A generation moves on (config.attr_gen, config.run_gen): every per-CPU memo
 * taken under the old one is stale. */
static __always_inline void bump(u32 *generation)
{
    __sync_fetch_and_add(generation, 1);
}

static __always_inline int streaming(void)
{
    struct config *c = cfg();
    return c && c->stream_hot;
}

/* Whether the ring has room for `size` more bytes (and a record header) right now. */
static __always_inline int ring_has_room(u64 size)
{
    u64 avail = bpf_ringbuf_query(EVENTS_RING, BPF_RB_AVAIL_DATA_);
    u64 ring = bpf_ringbuf_query(EVENTS_RING, BPF_RB_RING_SIZE_);
    return avail + size + 8 <= ring;
}

/* Events the ring buffer did not take (a run's record stands for its pages), by why. */
static __always_inline void count_lost(u64 events_lost, u64 size)
{
    u32 reason = ring_has_room(size) ? LOST_REFUSED : LOST_RING_FULL;
    u64 *n = lost.lookup(&reason);
    if (n)
        *n += events_lost;
}

/* A record built elsewhere (a run's), copied into the ring buffer. */
static __always_inline void submit_events(struct gmem_event *e, u64 stands_for)
{
    if (events.ringbuf_output(e, sizeof(*e), BPF_RB_NO_WAKEUP_) < 0)
        count_lost(stands_for, sizeof(*e));
}

/* One record of the current thread at time ts, written in place in the ring
 * buffer. Hot events (a fault, a page) leave comm empty: the process's name
 * comes with its rare events, and copying it costs. */
static __always_inline void emit_record(u64 ts, u16 kind, u16 flags, s32 result, u64 ino,
                                        u64 first, u64 count, u64 arg, u64 arg2, int with_comm)
{
    struct gmem_event *e = events.ringbuf_reserve(sizeof(struct gmem_event));
    if (!e) {
        count_lost(1, sizeof(struct gmem_event));
        return;
    }
    u64 id = bpf_get_current_pid_tgid();
    e->ts_ns = ts;
    e->pid = id >> 32;
    e->tid = (u32)id;
    e->kind = kind;
    e->flags = flags;
    e->result = result;
    e->ino = ino;
    e->first = first;
    e->count = count;
    e->arg = arg;
    e->arg2 = arg2;
    if (with_comm) {
        bpf_get_current_comm(&e->comm, sizeof(e->comm));
    } else {
        __builtin_memset(&e->comm, 0, sizeof(e->comm));
    }
    events.ringbuf_submit(e, BPF_RB_NO_WAKEUP_);
}

static __always_inline void emit(u16 kind, u16 flags, s32 result, u64 ino, u64 first, u64 count,
                                 u64 arg, u64 arg2)
{
    emit_record(bpf_ktime_get_ns(), kind, flags, result, ino, first, count, arg, arg2, 1);
}

/* A hot event, stamped by the caller: reading the clock costs as much as the
 * rest of a fault's program on some machines (about 65 ns in a PVM guest). */
static __always_inline void emit_hot(u64 ts, u16 kind, u16 flags, s32 result, u64 ino, u64 first,
                                     u64 count, u64 arg, u64 arg2)
{
    emit_record(ts, kind, flags, result, ino, first, count, arg, arg2, 0);
}

/* The struct file behind fd in the current task, or NULL. */
static __always_inline void *fd_file(u64 fd)
{
    void *task = (void *)bpf_get_current_task();
    void *files = NULL, *fdt = NULL, *file = NULL;
    void **fd_array = NULL;
    unsigned int max_fds = 0;

    bpf_probe_read_kernel(&files, sizeof(files), task + OFF_TASK_FILES);
    if (!files)
        return NULL;
    bpf_probe_read_kernel(&fdt, sizeof(fdt), files + OFF_FILES_FDT);
    if (!fdt)
        return NULL;
    bpf_probe_read_kernel(&max_fds, sizeof(max_fds), fdt + OFF_FDTABLE_MAX_FDS);
    if (fd >= max_fds)
        return NULL;
    bpf_probe_read_kernel(&fd_array, sizeof(fd_array), fdt + OFF_FDTABLE_FD);
    if (!fd_array)
        return NULL;
    bpf_probe_read_kernel(&file, sizeof(file), fd_array + fd);
    return file;
}

struct inode_id {
    u64 ino;
    u64 dev;
    u64 size;
};

static __always_inline int inode_id_of(void *inode, struct inode_id *id)
{
    void *sb = NULL;
    u32 dev = 0;
    if (!inode)
        return 0;
    bpf_probe_read_kernel(&id->ino, sizeof(id->ino), inode + OFF_INODE_I_INO);
    bpf_probe_read_kernel(&id->size, sizeof(id->size), inode + OFF_INODE_I_SIZE);
    bpf_probe_read_kernel(&sb, sizeof(sb), inode + OFF_INODE_I_SB);
    if (sb)
        bpf_probe_read_kernel(&dev, sizeof(dev), sb + OFF_SUPER_BLOCK_S_DEV);
    id->dev = dev;
    return 1;
}

static __always_inline int file_inode_id(void *file, struct inode_id *id)
{
    void *inode = NULL;
    if (!file)
        return 0;
    bpf_probe_read_kernel(&inode, sizeof(inode), file + OFF_FILE_F_INODE);
    return inode_id_of(inode, id);
}

/* The guest_memfd inode behind fd, or 0 when fd is something else. */
static __always_inline u64 gmem_ino_of_fd(u64 fd)
{
    struct inode_id id = {};
    if (!file_inode_id(fd_file(fd), &id))
        return 0;
    u64 *dev = gmem_inodes.lookup(&id.ino);
    return (dev && *dev == id.dev) ? id.ino : 0;
}

#endif
