/* gmemtrace, tracepoint tier: guest_memfd activity from stable tracepoints.
 *
 * Works on any kernel with BTF and the syscalls/filemap/exceptions/signal
 * tracepoints. Attribution happens here, in the kernel:
 *  - fd -> inode through the task's fd table (offsets from BTF, as -D OFF_*);
 *  - host fault address -> (inode, page index) through an LPM trie of the
 *    guest_memfd mappings, keyed by address space id and address; mappings
 *    are inserted at mmap/mremap exit and cut at munmap, here, so that no
 *    fault falls between a change and the collector hearing of it;
 *  - a SIGBUS (BUS_ADRERR) right after a guest_memfd fault of the same thread
 *    is that fault refused;
 *  - a page entering a guest_memfd while its thread is inside KVM_RUN is a
 *    guest fault (the only guest faults visible without function probes);
 *  - for the live view and the exporter, hot events are counted in maps;
 *  - per-CPU memos of the last answers spare the hot paths their lookups.
 *
 * Defines from gmemtrace/probes/program.py: OFF_* (BTF), RINGBUF_PAGES,
 * and the ioctl numbers (CMD_*); maps and helpers shared with the function
 * probes are in gmem_common.h, the mapping trie and the runs in gmem_shared.c.
 */
/* Compiled after gmem_common.h and gmem_shared.c: the loader puts them in one
 * text, since bcc rewrites map calls (table.lookup() ...) only in its main
 * source. */

#define SIGBUS_ 7
#define X86_PF_WRITE_ 0x2 /* the page fault error code's write bit */
#define BUS_ADRERR_ 2
#define KVM_MEM_GUEST_MEMFD_ (1 << 2)
#define KVM_MEMORY_ATTRIBUTE_PRIVATE_ (1ULL << 3)
#define KVM_EXIT_MEMORY_FAULT_ 39

/* Which syscall a stashed call belongs to. */
#define CALL_IOCTL 1
#define CALL_FALLOCATE 2
#define CALL_MMAP 3
#define CALL_MREMAP 4

struct pending_fault {
    u64 ino;
    u64 index;
    u64 addr;
    u32 tid; /* 0: none (taken by its SIGBUS, or the thread faulted elsewhere since) */
    u16 code; /* the page fault's error code (bits 0-15) */
    u16 pad;
};

/* The last guest_memfd faults taken on a CPU, one per thread, a few threads deep: a
 * fault may sleep between its tracepoint and its SIGBUS (the mmap lock, taken by a
 * conversion's unmap in another thread), and another thread's fault run on the CPU
 * meanwhile. */
#define PENDING_SLOTS 4
struct pending_faults {
    struct pending_fault slot[PENDING_SLOTS];
    u32 next;
    u32 pad;
};


/* A syscall between its entry and its exit: its arguments, by name. For an ioctl,
 * the head of its argument struct, copied from user memory at entry (uAPI
 * layouts, include/uapi/linux/kvm.h). */
struct call {
    u64 ts;
    u32 kind; /* CALL_* */
    u32 cmd;  /* the ioctl's number */
    u64 ino;
    u64 uarg; /* the ioctl's argument (KVM_SET_MEMORY_ATTRIBUTES2: error_offset read back) */
    union {
        u64 words[6]; /* what is copied */
        struct {      /* KVM_CREATE_GUEST_MEMFD */
            u64 size;
            u64 flags;
        } create;
        struct { /* KVM_SET_USER_MEMORY_REGION2 */
            u32 slot;
            u32 flags;
            u64 guest_phys_addr;
            u64 memory_size;
            u64 userspace_addr;
            u64 guest_memfd_offset;
            u32 guest_memfd;
            u32 pad1;
        } region;
        struct { /* KVM_SET_MEMORY_ATTRIBUTES[2] (address: a gpa, or an offset in the
                  * guest_memfd), KVM_GMEM_CONVERT_* (offset, size only) */
            u64 address;
            u64 size;
            u64 attributes;
        } convert;
        struct {
            u64 mode;
            u64 offset;
            u64 len;
        } fallocate;
        struct {
            u64 len;
            u64 pgoff;
        } mmap;
        struct {
            u64 old_len;
            u64 new_len;
            u64 pgoff; /* page index of the old address in its guest_memfd */
            u64 old_addr;
        } mremap;
    };
};

/* The last guest_memfd fault on this CPU: a SIGBUS for it follows on the same
 * CPU, in the same fault path (a per-CPU slot: no hash update per fault). */
BPF_PERCPU_ARRAY(pending, struct pending_faults, 1);
BPF_HASH(calls, u32, struct call, 16384);    /* tid -> syscall being traced */

/* tid inside KVM_RUN -> its vCPU's struct kvm_run (0: not known), where a
 * memory fault exit's gpa is. */
BPF_HASH(in_run, u32, u64, 16384);

/* Per CPU, for the page-cache programs: the guest_memfd inode last seen here,
 * and whether thread `tid` was inside KVM_RUN as of config.run_gen (only the
 * thread itself changes that, and each change bumps the generation). */
struct page_ctx {
    u64 ino; /* 0: none yet */
    u64 sb;  /* its super_block: with the inode number, the identity the maps check */
    u32 tid;
    u32 run_gen;
    u32 inside;
    u32 pad;
};
BPF_PERCPU_ARRAY(page_ctx, struct page_ctx, 1);

static __always_inline struct page_ctx *page_context(void)
{
    u32 zero = 0;
    return page_ctx.lookup(&zero);
}

/* Whether the current thread is inside KVM_RUN: a hash lookup only when this
 * CPU last asked for another thread, or some thread entered or left since. */
static __always_inline u16 inside_kvm_run(u32 tid)
{
    struct page_ctx *pc = page_context();
    struct config *c = cfg();
    if (!pc || !c)
        return in_run.lookup(&tid) != NULL;
    u32 gen = *(volatile u32 *)&c->run_gen;
    if (pc->tid != tid || pc->run_gen != gen) {
        pc->inside = in_run.lookup(&tid) != NULL;
        pc->tid = tid;
        pc->run_gen = gen;
    }
    return pc->inside;
}

/* The struct kvm_run of the vCPU behind fd (file->private_data is the vCPU). */
static __always_inline u64 vcpu_run_of_fd(u64 fd)
{
#if OFF_KVM_VCPU_RUN >= 0
    void *file = fd_file(fd), *vcpu = NULL;
    u64 run = 0;
    if (!file)
        return 0;
    bpf_probe_read_kernel(&vcpu, sizeof(vcpu), file + OFF_FILE_PRIVATE_DATA);
    if (vcpu)
        bpf_probe_read_kernel(&run, sizeof(run), vcpu + OFF_KVM_VCPU_RUN);
    return run;
#else
    return 0; /* struct kvm_vcpu not in this kernel's BTF */
#endif
}

static __always_inline void entered_kvm_run(u32 tid, u64 run)
{
    struct config *c = cfg();
    in_run.update(&tid, &run);
    if (c)
        bump(&c->run_gen);
}

static __always_inline void left_kvm_run(u32 tid)
{
    struct config *c = cfg();
    if (in_run.delete(&tid) == 0 && c)
        bump(&c->run_gen);
}

/* --- host faults ---------------------------------------------------------- */

#if !defined(FN_HOST_FAULT) || !defined(FN_HOST_FAULT_REFUSED)
/* The slot of thread tid's pending fault on this CPU (NULL: none). */
static __always_inline struct pending_fault *pending_of(struct pending_faults *all, u32 tid)
{
#pragma unroll
    for (int i = 0; i < PENDING_SLOTS; i++) {
        if (all->slot[i].tid == tid)
            return &all->slot[i];
    }
    return NULL;
}

/* Raw tracepoints for the hot paths: no trace record is built for them. */
RAW_TRACEPOINT_PROBE(page_fault_user)
{
    /* TP_PROTO(unsigned long address, struct pt_regs *regs, unsigned long error_code) */
    u64 id = bpf_get_current_pid_tgid();
    u32 zero = 0, asid = 0;
    struct pending_faults *all = pending.lookup(&zero);
    if (!all)
        return 0;
    u64 addr = ctx->args[0];
    struct vma_val *vma = fault_vma(id >> 32, addr, &asid);
    struct pending_fault *p = pending_of(all, (u32)id);
    if (!vma) {
        if (p)
            p->tid = 0; /* a SIGBUS now is not about its earlier guest_memfd fault */
        return 0;
    }
    if (!p) {
        p = &all->slot[all->next & (PENDING_SLOTS - 1)];
        all->next++;
    }
    p->ino = vma->ino;
    p->index = vma->pgoff + ((addr - vma->start) >> PAGE_SHIFT_);
    p->addr = addr;
    p->tid = (u32)id;
    u16 code = ctx->args[2] & 0xffff;
    p->code = code;
#ifdef FN_HOST_FAULT
    return 0; /* served faults come from kvm_gmem_fault_user_mapping */
#endif
    if (streaming())
        emit_hot(bpf_ktime_get_ns(), EV_HOST_FAULT, code, 0, p->ino, p->index, 1, addr, asid);
    else
        count_fault(p->ino, p->index, code, addr, asid);
    return 0;
}

#ifndef FN_HOST_FAULT_REFUSED
/* A SIGBUS (BUS_ADRERR) for a thread whose guest_memfd fault this CPU took is that
 * fault refused: it comes in the same fault path. */
TRACEPOINT_PROBE(signal, signal_generate)
{
    if (args->sig != SIGBUS_ || args->code != BUS_ADRERR_)
        return 0;
    u32 zero = 0;
    struct pending_faults *all = pending.lookup(&zero);
    if (!all || !args->pid)
        return 0;
    struct pending_fault *p = pending_of(all, (u32)args->pid);
    if (!p)
        return 0;
    struct pending_fault fault = *p;
    p->tid = 0;
    u16 access = ACCESS_KNOWN | ((fault.code & X86_PF_WRITE_) ? ACCESS_WRITE : 0);
    emit(EV_HOST_FAULT_REFUSED, access, -14 /* EFAULT */, fault.ino, fault.index, 1, fault.addr,
         0);
    return 0;
}
#endif
#endif

/* --- guest faults ------------------------------------------------------------ */

/* Whether a page entering a guest_memfd inside KVM_RUN is counted as a guest
 * fault: not when the function tier takes guest faults (kvm_gmem_get_pfn), nor
 * once KVM's own kvm_page_fault tracepoint has fired on this kernel (it sees
 * every fault; on some kernels, such as PVM's, it never fires). */
static __always_inline int guest_fault_by_page(void)
{
#ifdef FN_GUEST_FAULT
    return 0;
#else
    struct config *c = cfg();
    return !c || !c->kvm_faults_seen;
#endif
}

#if defined(HAVE_TP_KVM_PAGE_FAULT) && !defined(FN_GUEST_FAULT)
/* Every nested page fault of a vCPU, by guest physical address: the model finds
 * the guest_memfd page through the memslots and the VM's memory attributes. */
TRACEPOINT_PROBE(kvm, kvm_page_fault)
{
    u64 id = bpf_get_current_pid_tgid();
    struct config *c = cfg();
    if (c && !c->kvm_faults_seen)
        c->kvm_faults_seen = 1;
    if (!traced_asid(id >> 32))
        return 0;
    u64 gpa = args->fault_address;
    emit(EV_GUEST_FAULT, GUEST_FAULT_BY_GPA, 0, 0, gpa >> PAGE_SHIFT_, 1, gpa, args->error_code);
    return 0;
}
#endif

/* --- pages entering and leaving guest_memfds -------------------------------- */

struct page_id {
    u64 ino;
    u64 index;
    u64 count;
};

/* A member of a window read in one go (gmemtrace/kernel/offsets.py: WINDOWS). */
#define WORD_AT(win, lo, off) ((win)[((off) - (lo)) / 8])

/* The guest_memfd page a page-cache folio is (0: some other file's page). The
 * inode number is checked first: every page-cache change on the system passes
 * here, and most are not guest_memfd's. Members side by side come in one
 * probe read (a read is a helper call: they are most of this program's time):
 * three reads, four for an inode this CPU did not see last. */
static __always_inline int gmem_folio(void *folio, struct page_id *id)
{
    u64 f[FOLIO_WIN_WORDS], in[INODE_WIN_WORDS];
    void *host = NULL;
    u32 dev = 0;
    if (bpf_probe_read_kernel(f, sizeof(f), folio + FOLIO_WIN_LO))
        return 0;
    void *mapping = (void *)WORD_AT(f, FOLIO_WIN_LO, OFF_FOLIO_MAPPING);
    if (!mapping)
        return 0;
    bpf_probe_read_kernel(&host, sizeof(host), mapping + OFF_ADDRESS_SPACE_HOST);
    if (!host || bpf_probe_read_kernel(in, sizeof(in), host + INODE_WIN_LO))
        return 0;
    id->ino = WORD_AT(in, INODE_WIN_LO, OFF_INODE_I_INO);
    u64 sb = WORD_AT(in, INODE_WIN_LO, OFF_INODE_I_SB);
    /* Known inodes are never dropped: the one last seen on this CPU, on the same
     * super_block, needs neither the lookup nor the device number. */
    struct page_ctx *pc = page_context();
    if (!pc || !pc->ino || pc->ino != id->ino || pc->sb != sb) {
        u64 *known = gmem_inodes.lookup(&id->ino);
        if (!known || !sb)
            return 0;
        bpf_probe_read_kernel(&dev, sizeof(dev), (void *)sb + OFF_SUPER_BLOCK_S_DEV);
        if (*known != dev)
            return 0;
        if (pc) {
            pc->ino = id->ino;
            pc->sb = sb;
        }
    }
    id->index = WORD_AT(f, FOLIO_WIN_LO, OFF_FOLIO_INDEX);
    id->count = 1;
    if (WORD_AT(f, FOLIO_WIN_LO, OFF_FOLIO_FLAGS) & (1ULL << PG_HEAD_BIT)) {
        u64 flags_1 = 0; /* a large folio: its order is in _flags_1 */
        bpf_probe_read_kernel(&flags_1, sizeof(flags_1), folio + OFF_FOLIO_FLAGS_1);
        id->count = 1ULL << (flags_1 & 0x3f);
    }
    return 1;
}

RAW_TRACEPOINT_PROBE(mm_filemap_add_to_page_cache)
{
    /* TP_PROTO(struct folio *folio) */
    struct page_id page = {};
    if (!gmem_folio((void *)ctx->args[0], &page))
        return 0;
    u32 tid = (u32)bpf_get_current_pid_tgid();
    u16 guest = guest_fault_by_page() && inside_kvm_run(tid);
    if (streaming()) {
        u64 ts = bpf_ktime_get_ns();
        if (guest)
            emit_hot(ts, EV_GUEST_FAULT, 0, 0, page.ino, page.index, page.count, 0, 0);
        emit_hot(ts, EV_ALLOC, 0, 0, page.ino, page.index, page.count, 0, 0);
        return 0;
    }
    if (guest && !count_hot(EV_GUEST_FAULT, 0, page.ino, page.count))
        emit_hot(bpf_ktime_get_ns(), EV_GUEST_FAULT, 0, 0, page.ino, page.index, page.count, 0, 0);
    count_event(EV_ALLOC, 0, page.ino, page.index, page.count, PAGES_RESIDENT, 0, 0);
    return 0;
}

RAW_TRACEPOINT_PROBE(mm_filemap_delete_from_page_cache)
{
    struct page_id page = {};
    if (!gmem_folio((void *)ctx->args[0], &page))
        return 0;
    if (streaming())
        emit_hot(bpf_ktime_get_ns(), EV_FREE, 0, 0, page.ino, page.index, page.count, 0, 0);
    else
        count_event(EV_FREE, 0, page.ino, page.index, page.count, PAGES_GONE, 0, 0);
    return 0;
}

/* --- ioctls: creation, memslots, conversions, KVM_RUN ------------------------ */

static __always_inline int gmem_fd_cmd(u32 cmd)
{
    return cmd == CMD_SET_MEMORY_ATTRIBUTES2 || cmd == CMD_GMEM_CONVERT_SHARED ||
           cmd == CMD_GMEM_CONVERT_PRIVATE;
}

TRACEPOINT_PROBE(syscalls, sys_enter_ioctl)
{
    u64 id = bpf_get_current_pid_tgid();
    if (!traced_asid(id >> 32))
        return 0;
    u32 tid = (u32)id;
    u32 cmd = args->cmd;
    if (cmd == CMD_KVM_RUN) {
        entered_kvm_run(tid, vcpu_run_of_fd(args->fd));
        return 0;
    }
    if (cmd != CMD_CREATE_GUEST_MEMFD && cmd != CMD_SET_USER_MEMORY_REGION2 &&
        cmd != CMD_SET_MEMORY_ATTRIBUTES && !gmem_fd_cmd(cmd))
        return 0;
    struct call c = {.ts = bpf_ktime_get_ns(), .kind = CALL_IOCTL, .cmd = cmd};
    bpf_probe_read_user(&c.words, sizeof(c.words), (void *)args->arg);
    c.uarg = args->arg;
    if (gmem_fd_cmd(cmd))
        c.ino = gmem_ino_of_fd(args->fd);
    else if (cmd == CMD_SET_USER_MEMORY_REGION2)
        c.ino = gmem_ino_of_fd(c.region.guest_memfd);
    calls.update(&tid, &c);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_exit_ioctl)
{
    u32 tid = (u32)bpf_get_current_pid_tgid();
    left_kvm_run(tid);
    struct call *p = calls.lookup(&tid);
    if (!p || p->kind != CALL_IOCTL)
        return 0;
    struct call c = *p;
    calls.delete(&tid);
    s32 ret = args->ret;
    s32 result = ret < 0 ? ret : 0;
    u64 latency = bpf_ktime_get_ns() - c.ts;

    if (c.cmd == CMD_CREATE_GUEST_MEMFD) {
#ifndef FN_CREATE
        struct inode_id inode = {};
        if (ret >= 0 && file_inode_id(fd_file(ret), &inode))
            gmem_inodes.update(&inode.ino, &inode.dev);
        emit(EV_CREATE, 0, result, inode.ino, 0, c.create.size >> PAGE_SHIFT_, c.create.flags,
             inode.dev);
#endif
    } else if (c.cmd == CMD_SET_USER_MEMORY_REGION2) {
#ifndef FN_BIND
        if (c.region.flags & KVM_MEM_GUEST_MEMFD_)
            emit(EV_BIND, 0, result, c.ino, c.region.guest_memfd_offset >> PAGE_SHIFT_,
                 c.region.memory_size >> PAGE_SHIFT_, c.region.guest_phys_addr, c.region.slot);
#endif
    } else {
        u16 flags;
        if (c.cmd == CMD_SET_MEMORY_ATTRIBUTES)
            flags = CONV_IFACE_VM_ATTRIBUTES;
        else if (c.cmd == CMD_SET_MEMORY_ATTRIBUTES2)
            flags = CONV_IFACE_ATTRIBUTES2;
        else
            flags = CONV_IFACE_GMEM_CONVERT;
        int to_private = c.cmd == CMD_GMEM_CONVERT_PRIVATE ||
                         (c.cmd != CMD_GMEM_CONVERT_SHARED &&
                          (c.convert.attributes & KVM_MEMORY_ATTRIBUTE_PRIVATE_));
        if (to_private)
            flags |= CONV_TO_PRIVATE;
        if (c.cmd != CMD_SET_MEMORY_ATTRIBUTES && !c.ino)
            return 0; /* the same ioctl numbers on something that is not a guest_memfd */
#ifdef FN_CONVERT
        if (c.cmd != CMD_SET_MEMORY_ATTRIBUTES)
            return 0; /* in place: __kvm_gmem_set_attributes tells, with its blocking page */
#endif
        u64 arg = c.convert.address;
        /* The page that blocked it: error_offset (byte 32), written back on -EAGAIN
         * and -ENOMEM only (other errors leave it as the caller set it). */
        if (c.cmd == CMD_SET_MEMORY_ATTRIBUTES2 && (result == -11 || result == -12)) {
            u64 error_offset = 0;
            if (!bpf_probe_read_user(&error_offset, sizeof(error_offset),
                                     (void *)(c.uarg + 32))) {
                arg = error_offset >> PAGE_SHIFT_;
                flags |= CONV_BLOCKED;
            }
        }
        emit(EV_CONVERT, flags, result, c.ino, c.convert.address >> PAGE_SHIFT_,
             pages_up(c.convert.size), arg, latency);
    }
    return 0;
}

TRACEPOINT_PROBE(kvm, kvm_userspace_exit)
{
    if (args->reason != KVM_EXIT_MEMORY_FAULT_)
        return 0;
    u64 id = bpf_get_current_pid_tgid();
    if (!traced_asid(id >> 32))
        return 0;
    /* struct kvm_run's exit union is at byte 32: memory_fault { flags, gpa, size } */
    u32 tid = (u32)id;
    u64 fault[3] = {};
    u64 *run = in_run.lookup(&tid);
    if (run && *run)
        bpf_probe_read_kernel(fault, sizeof(fault), (void *)(*run + 32));
    emit(EV_MEMORY_FAULT_EXIT, fault[0], args->errno, 0, fault[1] >> PAGE_SHIFT_,
         pages_up(fault[2]), fault[1], fault[2]);
    return 0;
}

/* --- fallocate: allocation and hole punching ------------------------------- */

#ifndef FN_PUNCH
TRACEPOINT_PROBE(syscalls, sys_enter_fallocate)
{
    u64 id = bpf_get_current_pid_tgid();
    if (!traced_asid(id >> 32))
        return 0;
    u64 ino = gmem_ino_of_fd(args->fd);
    if (!ino)
        return 0;
    u32 tid = (u32)id;
    struct call c = {.ts = bpf_ktime_get_ns(), .kind = CALL_FALLOCATE, .ino = ino};
    c.fallocate.mode = args->mode;
    c.fallocate.offset = args->offset;
    c.fallocate.len = args->len;
    calls.update(&tid, &c);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_exit_fallocate)
{
    u32 tid = (u32)bpf_get_current_pid_tgid();
    struct call *p = calls.lookup(&tid);
    if (!p || p->kind != CALL_FALLOCATE)
        return 0;
    struct call c = *p;
    calls.delete(&tid);
    s32 ret = args->ret;
    u16 kind = (c.fallocate.mode & FALLOC_FL_PUNCH_HOLE_) ? EV_PUNCH : EV_FALLOCATE;
    u64 first = c.fallocate.offset >> PAGE_SHIFT_;
    u64 end = pages_up(c.fallocate.offset + c.fallocate.len);
    u64 latency = bpf_ktime_get_ns() - c.ts;
    emit(kind, c.fallocate.mode, ret < 0 ? ret : 0, c.ino, first, end - first, latency, 0);
    return 0;
}
#endif

/* --- mappings: mmap, munmap, mremap, fork, exec ---------------------------- */

TRACEPOINT_PROBE(syscalls, sys_enter_mmap)
{
    u64 id = bpf_get_current_pid_tgid();
    if (!traced_asid(id >> 32) || (s64)args->fd < 0)
        return 0;
    u64 ino = gmem_ino_of_fd(args->fd);
    if (!ino)
        return 0;
    u32 tid = (u32)id;
    struct call c = {.kind = CALL_MMAP, .ino = ino};
    c.mmap.len = args->len;
    c.mmap.pgoff = args->off >> PAGE_SHIFT_;
    calls.update(&tid, &c);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_exit_mmap)
{
    u64 id = bpf_get_current_pid_tgid();
    u32 tid = (u32)id;
    struct call *p = calls.lookup(&tid);
    if (!p || p->kind != CALL_MMAP)
        return 0;
    struct call c = *p;
    calls.delete(&tid);
    long ret = args->ret;
    u64 pages = pages_up(c.mmap.len);
    u32 asid = traced_asid(id >> 32);
    if (ret < 0 && ret > -4096) {
        emit(EV_MMAP, 0, ret, c.ino, c.mmap.pgoff, pages, 0, asid);
        return 0;
    }
    map_range(asid, ret, ret + (pages << PAGE_SHIFT_), c.ino, c.mmap.pgoff);
    emit(EV_MMAP, 0, 0, c.ino, c.mmap.pgoff, pages, ret, asid);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_munmap)
{
    u64 id = bpf_get_current_pid_tgid();
    u32 asid = traced_asid(id >> 32);
    if (!asid || !args->len)
        return 0;
    u64 addr = args->addr;
    u64 end = addr + (pages_up(args->len) << PAGE_SHIFT_);
    u64 ino = unmap_range(asid, addr, end);
    if (ino)
        emit(EV_MUNMAP, 0, 0, ino, 0, (end - addr) >> PAGE_SHIFT_, addr, asid);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_mremap)
{
    u64 id = bpf_get_current_pid_tgid();
    u32 asid = traced_asid(id >> 32);
    if (!asid)
        return 0;
    struct vma_val *vma = lookup_vma(asid, args->addr);
    if (!vma)
        return 0;
    u32 tid = (u32)id;
    struct call c = {.kind = CALL_MREMAP, .ino = vma->ino};
    c.mremap.old_len = args->old_len;
    c.mremap.new_len = args->new_len;
    c.mremap.pgoff = vma->pgoff + ((args->addr - vma->start) >> PAGE_SHIFT_);
    c.mremap.old_addr = args->addr;
    calls.update(&tid, &c);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_exit_mremap)
{
    u64 id = bpf_get_current_pid_tgid();
    u32 tid = (u32)id;
    struct call *p = calls.lookup(&tid);
    if (!p || p->kind != CALL_MREMAP)
        return 0;
    struct call c = *p;
    calls.delete(&tid);
    long ret = args->ret;
    if (ret < 0 && ret > -4096)
        return 0;
    u32 asid = traced_asid(id >> 32);
    u64 old_pages = pages_up(c.mremap.old_len);
    u64 pages = pages_up(c.mremap.new_len);
    unmap_range(asid, c.mremap.old_addr, c.mremap.old_addr + (old_pages << PAGE_SHIFT_));
    map_range(asid, ret, ret + (pages << PAGE_SHIFT_), c.ino, c.mremap.pgoff);
    emit(EV_MREMAP, 0, 0, c.ino, c.mremap.pgoff, pages, ret, c.mremap.old_addr);
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_fork)
{
    u32 asid = traced_asid(bpf_get_current_pid_tgid() >> 32);
    if (!asid)
        return 0;
    /* The child starts with a copy of the parent's mappings: it shares its
     * address space id until it execs. Threads land here too, harmlessly. */
    u32 child = args->child_pid;
    targets.update(&child, &asid);
    emit(EV_FORK, 0, 0, 0, 0, 0, child, asid);
    return 0;
}

/* The task's name (after exec: the new program's) is the one --comm follows. */
static __always_inline int named_as_followed(struct config *c)
{
    char comm[16] = {};
    bpf_get_current_comm(&comm, sizeof(comm));
#pragma unroll
    for (int i = 0; i < 16; i++) {
        if (comm[i] != c->comm[i])
            return 0;
        if (!comm[i])
            break;
    }
    return 1;
}

TRACEPOINT_PROBE(sched, sched_process_exec)
{
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    struct config *c = cfg();
    if (!c)
        return 0;
    /* A process that execs into the followed name is traced from its first
     * instruction: nothing it does is missed while user space looks for it. */
    if (!traced_asid(tgid) && !(c->follow_comm && named_as_followed(c)))
        return 0;
    /* Not atomic: bcc's target has no fetching atomics, and two execs racing
     * here would only make two processes share an id. */
    u32 asid = c->next_asid;
    c->next_asid = asid + 1;
    targets.update(&tgid, &asid);
    bump(&c->attr_gen); /* cached answers name the old id */
    emit(EV_EXEC, 0, 0, 0, 0, 0, 0, asid);
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_exit)
{
    u32 tid = (u32)bpf_get_current_pid_tgid();
    calls.delete(&tid);
    left_kvm_run(tid);
    return 0;
}
