/* gmemtrace: what the tracepoint and function tiers share besides gmem_common.h.
 *
 *  - the guest_memfd mappings: an LPM trie keyed by address space id and
 *    address (aligned power-of-two blocks), kept at mmap/mremap/munmap, that
 *    turns a host fault address into (inode, page index), with a per-CPU memo
 *    of the last answer;
 *  - runs (coalesced mode): consecutive hot events of one thread on
 *    consecutive pages become one record, flushed on demand by the collector.
 *
 * Compiled after gmem_common.h, before the tiers' programs (one text: bcc
 * rewrites map calls only in its main source).
 */

#define ADDR_BITS 48 /* user address space of x86-64 4-level paging */

/* --- the guest_memfd mappings -------------------------------------------- */

struct vma_key {
    u32 prefixlen;
    u32 asid_be;
    u64 addr_be;
};

struct vma_val {
    u64 start;
    u64 end;
    u64 ino;
    u64 pgoff; /* page index of start */
};

BPF_LPM_TRIE(gmem_vmas, struct vma_key, struct vma_val, 262144);

struct vma_cache {
    struct vma_val vma;
    u32 tgid;
    u32 asid;
    u32 gen; /* config.attr_gen when it was looked up */
    u32 pad;
};
BPF_PERCPU_ARRAY(vma_cache, struct vma_cache, 1);

static __always_inline void put_block(u32 asid, u64 addr, int bits, struct vma_val *val)
{
    struct vma_key key = {
        .prefixlen = 32 + 64 - bits,
        .asid_be = __builtin_bswap32(asid),
        .addr_be = __builtin_bswap64(addr),
    };
    if (val)
        gmem_vmas.update(&key, val);
    else
        gmem_vmas.delete(&key);
}

/* Cover the page-aligned [start, end) with aligned power-of-two blocks, writing
 * `val` to each (or deleting them when val is NULL): first the blocks that
 * bring start up to a higher alignment, then the largest ones that still fit.
 * gmemtrace/probes/vmas.py:blocks() is the same algorithm; the shifts are loop
 * constants so that the verifier can prune. */
static __always_inline void write_range(u32 asid, u64 start, u64 end, struct vma_val *val)
{
    u64 addr = start;
    struct config *c = cfg();
    if (c)
        bump(&c->attr_gen);
    for (int bits = PAGE_SHIFT_; bits < ADDR_BITS; bits++) {
        if ((addr & (1ULL << bits)) && addr + (1ULL << bits) <= end) {
            put_block(asid, addr, bits, val);
            addr += 1ULL << bits;
        }
    }
    for (int bits = ADDR_BITS - 1; bits >= PAGE_SHIFT_; bits--) {
        if (addr + (1ULL << bits) <= end) {
            put_block(asid, addr, bits, val);
            addr += 1ULL << bits;
        }
    }
}

static __always_inline void map_range(u32 asid, u64 start, u64 end, u64 ino, u64 pgoff)
{
    struct vma_val val = {.start = start, .end = end, .ino = ino, .pgoff = pgoff};
    write_range(asid, start, end, &val);
}

static __always_inline struct vma_val *lookup_vma(u32 asid, u64 addr)
{
    struct vma_key key = {
        .prefixlen = 96, .asid_be = __builtin_bswap32(asid), .addr_be = __builtin_bswap64(addr)};
    struct vma_val *val = gmem_vmas.lookup(&key);
    return (val && val->ino) ? val : NULL;
}

/* The guest_memfd mapping a fault address of process tgid is in, and the
 * process's address space id (0: not traced). Each CPU keeps its last answer,
 * good while config.attr_gen (read before the maps) is unchanged: faults come
 * in runs from one process over one mapping, and most skip both the target
 * lookup and the trie walk. */
static __always_inline struct vma_val *fault_vma(u32 tgid, u64 addr, u32 *asid)
{
    u32 zero = 0;
    struct vma_cache *cache = vma_cache.lookup(&zero);
    struct config *c = cfg();
    if (!cache || !c)
        return NULL;
    u32 gen = *(volatile u32 *)&c->attr_gen;
    if (cache->gen == gen && cache->tgid == tgid && cache->vma.ino) {
        *asid = cache->asid;
        if (addr >= cache->vma.start && addr < cache->vma.end)
            return &cache->vma;
    } else {
        *asid = traced_asid(tgid);
        if (!*asid)
            return NULL;
    }
    struct vma_val *vma = lookup_vma(*asid, addr);
    if (!vma)
        return NULL;
    cache->vma = *vma;
    cache->tgid = tgid;
    cache->asid = *asid;
    cache->gen = gen;
    return &cache->vma;
}

/* Unmap [addr, end) from the guest_memfd mapping it starts or ends in: drop
 * the mapping's blocks and put back the pieces that stay mapped. Returns the
 * mapping's inode, 0 when the range touches no guest_memfd mapping. */
static __always_inline u64 unmap_range(u32 asid, u64 addr, u64 end)
{
    struct vma_val *found = lookup_vma(asid, addr);
    if (!found)
        found = lookup_vma(asid, end - 1);
    if (!found)
        return 0;
    struct vma_val vma = *found;
    write_range(asid, vma.start, vma.end, NULL);
    u64 lo = addr > vma.start ? addr : vma.start;
    u64 hi = end < vma.end ? end : vma.end;
    if (vma.start < lo)
        map_range(asid, vma.start, lo, vma.ino, vma.pgoff);
    if (hi < vma.end)
        map_range(asid, hi, vma.end, vma.ino, vma.pgoff + ((hi - vma.start) >> PAGE_SHIFT_));
    return vma.ino;
}

/* --- runs (coalesced mode) ------------------------------------------------ */

/* Between busy marks the compiler keeps the run's stores (an IPI sees them in order). */
#define compiler_barrier() asm volatile("" ::: "memory")

/* Coalesced mode: consecutive hot events of one thread on consecutive pages
 * (and, for host faults, consecutive addresses) make one record, whose count
 * is the pages. A run waits in a per-CPU slot until the next event does not
 * continue it, a page it holds is about to change the other way (alloc vs
 * free), or the collector flushes the CPU (flush_runs_here, below). */
#define RUN_FAULT 0
#define RUN_ALLOC 1
#define RUN_FREE 2
#define N_RUNS 3

struct run {
    u64 ts;    /* the first event's time */
    u64 ino;
    u64 first;
    u64 count; /* pages; 0: no run open */
    u64 addr;  /* host faults: the first page's address */
    u32 pid;
    u32 tid;
    u32 asid;
    u16 kind;  /* EV_HOST_FAULT, EV_ALLOC or EV_FREE */
    u16 flags; /* host faults: the error code; allocations: 1 inside KVM_RUN */
    u32 busy;  /* a program is changing the run: a flush by IPI leaves it be */
    u32 pad;
};
BPF_PERCPU_ARRAY(runs, struct run, N_RUNS);

static __always_inline void flush_run(struct run *r)
{
    if (!r->count)
        return;
    struct gmem_event e = {
        .ts_ns = r->ts,
        .pid = r->pid,
        .tid = r->tid,
        .kind = r->kind,
        .ino = r->ino,
        .first = r->first,
        .count = r->count,
    };
    if (r->kind == EV_HOST_FAULT) {
        e.flags = r->flags;
        e.arg = r->addr;
        e.arg2 = r->asid;
    }
    submit_events(&e, r->count);
    if (r->kind == EV_ALLOC && r->flags) {
        e.kind = EV_GUEST_FAULT;
        submit_events(&e, r->count);
    }
    r->count = 0;
}

static __always_inline struct run *run_slot(u32 slot)
{
    return runs.lookup(&slot);
}

static __always_inline void mark_busy(struct run *r, u32 busy)
{
    compiler_barrier();
    r->busy = busy;
    compiler_barrier();
}

/* Not attached: the collector runs it on each CPU that holds a run
 * (BPF_PROG_TEST_RUN with BPF_F_TEST_RUN_ON_CPU, an IPI there: no migration,
 * gmemtrace/probes/program.py), so that the CPU's runs reach the ring
 * buffer. The IPI may interrupt a hot program halfway through a run: a busy
 * run stays for the next flush. */
int flush_runs_here(struct bpf_raw_tracepoint_args *ctx)
{
    for (u32 slot = 0; slot < N_RUNS; slot++) {
        struct run *r = run_slot(slot);
        if (r && !r->busy)
            flush_run(r);
    }
    return 0;
}

/* Pages [first, first + count) of ino, by the current thread: the run grows,
 * or it is flushed and a new one starts here (the only clock read). */
static __always_inline void add_to_run(struct run *r, u16 kind, u16 flags, u64 ino, u64 first,
                                       u64 count, u64 addr, u32 asid)
{
    u64 id = bpf_get_current_pid_tgid();
    if (r->count && r->tid == (u32)id && r->ino == ino && r->flags == flags &&
        r->first + r->count == first &&
        (kind != EV_HOST_FAULT || r->addr + (r->count << PAGE_SHIFT_) == addr)) {
        r->count += count;
        return;
    }
    flush_run(r);
    r->ts = bpf_ktime_get_ns();
    r->pid = id >> 32;
    r->tid = (u32)id;
    r->kind = kind;
    r->flags = flags;
    r->ino = ino;
    r->first = first;
    r->count = count;
    r->addr = addr;
    r->asid = asid;
}
