/* gmemtrace: what the tracepoint and function tiers share besides gmem_common.h.
 *
 *  - the guest_memfd mappings: an LPM trie keyed by address space id and
 *    address (aligned power-of-two blocks), kept at mmap/mremap/munmap, that
 *    turns a host fault address into (inode, page index), with a per-CPU memo
 *    of the last answer;
 *  - counting mode (the live view, the exporter): hot events as counts and
 *    page bits in maps, read by the collector, instead of ring records.
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

/* --- counting (the live view's and the exporter's mode) ------------------- */

/* Counting mode (config.stream_hot == 0): a hot event (a host fault, a page
 * entering or leaving a guest_memfd, a guest fault seen by its page) costs map
 * updates and no ring record, in whatever order the pages come:
 *  - hot_counts: per CPU, the events so far by inode, process, thread, kind and
 *    flags; the collector reads the sums and takes differences;
 *  - page_blocks: per inode and block of 512 pages, which pages are resident
 *    (changed atomically: exact whenever it is read) and which were faulted in
 *    the current read generation (the heat the view shows), two generations
 *    side by side so that the collector reads the one that just ended.
 * The collector (gmemtrace/probes/program.py) moves read_gen on, then reads
 * both maps whole (in batches). An event the maps cannot take (one is full, or a
 * folio spans blocks) goes to the ring buffer as a record, as in a recording. */
#define BLOCK_SHIFT 9 /* 512 pages a block: 8 words of bits */
#define BLOCK_WORDS 8
#define BPF_F_NO_PREALLOC_ 1

struct hot_key {
    u64 ino;
    u32 pid;
    u32 tid;
    u16 kind;
    u16 flags;
    u32 pad;
};
BPF_PERCPU_HASH(hot_counts, struct hot_key, u64, 16384);

struct block_key {
    u64 ino;
    u64 block; /* page index >> BLOCK_SHIFT */
};

struct block_bits {
    u64 resident[BLOCK_WORDS];
    /* pages faulted in generation fault_gen[i], i its parity: words [i * BLOCK_WORDS, ...)
     * (one dimension: bcc describes only the first of two to user space) */
    u64 faulted[2 * BLOCK_WORDS];
    u32 fault_gen[2];
};
/* 32,768 blocks: 64 GiB of guest_memfd pages; allocated as used. Few large blocks, not
 * many small ones: a hash map's buckets are as many as its entries may be, and a random
 * fault that lands in a bucket array of megabytes misses the cache (about 190 ns a fault
 * with 262,144 blocks of 64 pages, measured). */
BPF_F_TABLE("hash", struct block_key, struct block_bits, page_blocks, 32768, BPF_F_NO_PREALLOC_);
BPF_ARRAY(read_gen, u32, 1);


/* Pages [first, first + count) of ino marked in their block; 0: not taken (the
 * caller emits a record instead: pages that span two words, a large folio). */
static __always_inline int mark_pages(u64 ino, u64 first, u64 count, int how)
{
    u64 shift = first & 63;
    if (!count || shift + count > 64)
        return 0;
    u64 bits = (count == 64 ? ~0ULL : (1ULL << count) - 1) << shift;
    u32 word = (first >> 6) & (BLOCK_WORDS - 1);
    struct block_key key = {.ino = ino, .block = first >> BLOCK_SHIFT};
    struct block_bits *b = page_blocks.lookup(&key);
    if (!b) {
        struct block_bits fresh = {.fault_gen = {~0U, ~0U}};
        page_blocks.insert(&key, &fresh); /* another CPU may have been first: fine */
        b = page_blocks.lookup(&key);
        if (!b)
            return 0;
    }
    if (how == PAGES_RESIDENT) {
        __sync_fetch_and_or(&b->resident[word], bits);
    } else if (how == PAGES_GONE) {
        __sync_fetch_and_and(&b->resident[word], ~bits);
    } else {
        u32 zero = 0;
        u32 *genp = read_gen.lookup(&zero);
        if (!genp)
            return 0;
        u32 gen = *(volatile u32 *)genp, i = gen & 1;
        if (b->fault_gen[i] != gen) { /* a new generation: its heat starts empty */
#pragma unroll
            for (int w = 0; w < BLOCK_WORDS; w++)
                b->faulted[i * BLOCK_WORDS + w] = 0;
            b->fault_gen[i] = gen;
        }
        __sync_fetch_and_or(&b->faulted[i * BLOCK_WORDS + word], bits);
    }
    return 1;
}

/* `n` events of thread tid of process pid counted; 0: not taken (the map is full). */
static __always_inline int count_hot_of(u32 pid, u32 tid, u16 kind, u16 flags, u64 ino, u64 n)
{
    struct hot_key key = {.ino = ino, .pid = pid, .tid = tid, .kind = kind, .flags = flags};
    u64 *count = hot_counts.lookup(&key);
    if (count) {
        *count += n; /* this CPU's own: no other writer */
        return 1;
    }
    return hot_counts.update(&key, &n) == 0;
}

/* `n` events of the current thread counted. */
static __always_inline int count_hot(u16 kind, u16 flags, u64 ino, u64 n)
{
    u64 id = bpf_get_current_pid_tgid();
    return count_hot_of(id >> 32, (u32)id, kind, flags, ino, n);
}

/* A hot event in counting mode: its pages marked, then counted; what the maps do
 * not take becomes a record (its pages again: marks are idempotent). */
static __always_inline void count_event(u16 kind, u16 flags, u64 ino, u64 first, u64 count,
                                        int how, u64 arg, u64 arg2)
{
    if (mark_pages(ino, first, count, how) && count_hot(kind, flags, ino, count))
        return;
    emit_hot(bpf_ktime_get_ns(), kind, flags, 0, ino, first, count, arg, arg2);
}

/* Host faults in counting mode come in runs: a thread faulting consecutive pages (in
 * one word of page bits) costs a per-CPU increment, and the map updates are paid once
 * a run, when the next fault does not continue it. The collector reads the open runs
 * beside the maps (after them: a run still here was never counted there) and trusts a
 * run whose two sequence numbers agree: seq_b is written first when the run changes,
 * seq_a last, and both are read in one copy, seq_a first. */
#define compiler_barrier() asm volatile("" ::: "memory")

struct fault_run {
    u64 seq_a;
    u64 ino;
    u64 first;
    u64 count; /* 0: none open */
    u64 addr;  /* the first page's address */
    u32 pid;
    u32 tid;
    u32 asid;
    u16 flags; /* the fault's error code */
    u16 pad;
    u64 seq_b;
};
BPF_PERCPU_ARRAY(fault_runs, struct fault_run, 1);

/* A run ended: into the maps (or, what they do not take, the ring buffer). */
static __always_inline void count_run(struct fault_run *done)
{
    if (mark_pages(done->ino, done->first, done->count, PAGES_FAULTED) &&
        count_hot_of(done->pid, done->tid, EV_HOST_FAULT, done->flags, done->ino, done->count))
        return;
    struct gmem_event e = {
        .ts_ns = bpf_ktime_get_ns(),
        .pid = done->pid,
        .tid = done->tid,
        .kind = EV_HOST_FAULT,
        .flags = done->flags,
        .ino = done->ino,
        .first = done->first,
        .count = done->count,
        .arg = done->addr,
        .arg2 = done->asid,
    };
    submit_events(&e, done->count);
}

static __always_inline void count_fault(u64 ino, u64 index, u16 flags, u64 addr, u32 asid)
{
    u32 zero = 0;
    struct fault_run *r = fault_runs.lookup(&zero);
    if (!r) {
        count_event(EV_HOST_FAULT, flags, ino, index, 1, PAGES_FAULTED, addr, asid);
        return;
    }
    u64 id = bpf_get_current_pid_tgid();
    if (r->count && r->tid == (u32)id && r->ino == ino && r->flags == flags &&
        r->first + r->count == index && (index & 63)) {
        r->count += 1;
        return;
    }
    struct fault_run done = *r;
    u64 seq = done.seq_a + 1;
    r->seq_b = seq;
    compiler_barrier();
    r->ino = ino;
    r->first = index;
    r->count = 1;
    r->addr = addr & ~4095ULL;
    r->pid = id >> 32;
    r->tid = (u32)id;
    r->asid = asid;
    r->flags = flags;
    compiler_barrier();
    r->seq_a = seq;
    compiler_barrier();
    /* Counted in the maps only once it left the run: a reader that sees it there sees
     * the run replaced. */
    if (done.count)
        count_run(&done);
}
