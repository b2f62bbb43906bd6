/* gmemtrace, function tier: kprobes on the guest_memfd functions themselves.
 *
 * Compiled into the tracepoint program (one ring buffer, one set of maps)
 * for the events the plan gave this tier: each FN_<EVENT> define says the
 * event comes from here, and the tracepoint programs leave it out. What a
 * function sees that no tracepoint does: every guest fault (kvm_gmem_get_pfn,
 * not only the allocating ones) with its page and latency, and the last close
 * of a guest_memfd (kvm_gmem_release).
 *
 * Defines from gmemtrace/probes/tracepoints.py: FN_* (events), HAVE_<function>
 * for each function the running kernel has (BTF or kallsyms), OFF_SLOT_* and
 * OFF_* offsets from BTF (the kvm module's, where KVM is a module); FUNCTION_TIER
 * when any event comes from here (else this file compiles to nothing).
 */
#ifdef FUNCTION_TIER

/* What an entry probe keeps for its return probe, per thread and function. */
struct fn_call {
    u64 ts;
    u64 ptr; /* the function's struct argument (args, slot or file) */
    u64 ino;
    u64 first;
    u64 count;
    u64 arg; /* gfn, or fallocate's mode */
};
BPF_HASH(fn_calls, u64, struct fn_call, 16384);

#define FNID_GET_PFN 1
#define FNID_CREATE 2
#define FNID_BIND 3
#define FNID_FALLOCATE 4

static __always_inline u64 fn_key(u32 fn)
{
    return ((u64)(u32)bpf_get_current_pid_tgid() << 8) | fn; /* thread id, function */
}

static __always_inline int fn_traced(void)
{
    return traced_asid(bpf_get_current_pid_tgid() >> 32) != 0;
}

static __always_inline void fn_enter(u32 fn, struct fn_call *call)
{
    u64 key = fn_key(fn);
    call->ts = bpf_ktime_get_ns();
    fn_calls.update(&key, call);
}

/* The entry's record, taken out of the map (NULL: the entry was not traced). */
static __always_inline int fn_leave(u32 fn, struct fn_call *out)
{
    u64 key = fn_key(fn);
    struct fn_call *call = fn_calls.lookup(&key);
    if (!call)
        return 0;
    *out = *call;
    fn_calls.delete(&key);
    return 1;
}

/* The guest_memfd page a memslot maps guest frame gfn to. */
static __always_inline int slot_page(void *slot, u64 gfn, struct fn_call *call)
{
    void *file = NULL;
    u64 base_gfn = 0, pgoff = 0;
    struct inode_id id = {};
    bpf_probe_read_kernel(&file, sizeof(file), slot + OFF_SLOT_GMEM_FILE);
    if (!file_inode_id(file, &id))
        return 0;
    bpf_probe_read_kernel(&base_gfn, sizeof(base_gfn), slot + OFF_SLOT_BASE_GFN);
    bpf_probe_read_kernel(&pgoff, sizeof(pgoff), slot + OFF_SLOT_GMEM_PGOFF);
    call->ino = id.ino;
    call->first = gfn - base_gfn + pgoff;
    call->count = 1;
    call->arg = gfn;
    return 1;
}

#ifdef FN_GUEST_FAULT
/* int kvm_gmem_get_pfn(struct kvm *, struct kvm_memory_slot *, gfn_t, ...): every
 * guest fault on private memory, whether it allocates or finds the page. */
int kprobe__kvm_gmem_get_pfn(struct pt_regs *ctx)
{
    struct fn_call call = {};
    if (fn_traced() && slot_page((void *)PT_REGS_PARM2(ctx), PT_REGS_PARM3(ctx), &call))
        fn_enter(FNID_GET_PFN, &call);
    return 0;
}

int kretprobe__kvm_gmem_get_pfn(struct pt_regs *ctx)
{
    struct fn_call c;
    if (!fn_leave(FNID_GET_PFN, &c))
        return 0;
    u64 latency = bpf_ktime_get_ns() - c.ts;
    emit(EV_GUEST_FAULT, GUEST_FAULT_TIMED, (s32)PT_REGS_RC(ctx), c.ino, c.first, 1,
         c.arg << PAGE_SHIFT_, latency);
    return 0;
}
#endif

#ifdef FN_CREATE
/* int kvm_gmem_create(struct kvm *, struct kvm_create_guest_memfd *args): the new fd. */
int kprobe__kvm_gmem_create(struct pt_regs *ctx)
{
    struct fn_call call = {};
    u64 args[2] = {}; /* uAPI struct kvm_create_guest_memfd: size, flags */
    if (!fn_traced())
        return 0;
    bpf_probe_read_kernel(args, sizeof(args), (void *)PT_REGS_PARM2(ctx));
    call.count = args[0] >> PAGE_SHIFT_;
    call.arg = args[1];
    fn_enter(FNID_CREATE, &call);
    return 0;
}

int kretprobe__kvm_gmem_create(struct pt_regs *ctx)
{
    struct fn_call c;
    struct inode_id inode = {};
    if (!fn_leave(FNID_CREATE, &c))
        return 0;
    long ret = PT_REGS_RC(ctx);
    if (ret >= 0 && file_inode_id(fd_file(ret), &inode))
        gmem_inodes.update(&inode.ino, &inode.dev);
    emit(EV_CREATE, 0, ret < 0 ? ret : 0, inode.ino, 0, c.count, c.arg, inode.dev);
    return 0;
}
#endif

#ifdef FN_BIND
/* kvm_gmem_bind(struct kvm *, struct kvm_memory_slot *, fd, offset) in mainline;
 * kvm_gmem_commit_memory_region(struct kvm *, struct kvm_memory_slot *) in some
 * stable kernels (Debian's 6.12): either way the memslot, filled in on success. */
static __always_inline int bind_enter(struct pt_regs *ctx)
{
    struct fn_call call = {.ptr = PT_REGS_PARM2(ctx)};
    if (fn_traced())
        fn_enter(FNID_BIND, &call);
    return 0;
}

static __always_inline int bind_leave(struct pt_regs *ctx)
{
    struct fn_call c;
    if (!fn_leave(FNID_BIND, &c))
        return 0;
    void *slot = (void *)c.ptr;
    u64 base_gfn = 0, npages = 0;
    u16 id = 0;
    bpf_probe_read_kernel(&base_gfn, sizeof(base_gfn), slot + OFF_SLOT_BASE_GFN);
    bpf_probe_read_kernel(&npages, sizeof(npages), slot + OFF_SLOT_NPAGES);
    bpf_probe_read_kernel(&id, sizeof(id), slot + OFF_SLOT_ID);
    slot_page(slot, base_gfn, &c);
    emit(EV_BIND, 0, (s32)PT_REGS_RC(ctx), c.ino, c.first, npages, base_gfn << PAGE_SHIFT_, id);
    return 0;
}

#if defined(HAVE_kvm_gmem_bind)
int kprobe__kvm_gmem_bind(struct pt_regs *ctx) { return bind_enter(ctx); }
int kretprobe__kvm_gmem_bind(struct pt_regs *ctx) { return bind_leave(ctx); }
#else
int kprobe__kvm_gmem_commit_memory_region(struct pt_regs *ctx) { return bind_enter(ctx); }
int kretprobe__kvm_gmem_commit_memory_region(struct pt_regs *ctx) { return bind_leave(ctx); }
#endif
#endif

#ifdef FN_PUNCH
/* long kvm_gmem_fallocate(struct file *, int mode, loff_t offset, loff_t len). */
int kprobe__kvm_gmem_fallocate(struct pt_regs *ctx)
{
    struct inode_id id = {};
    if (!fn_traced() || !file_inode_id((void *)PT_REGS_PARM1(ctx), &id))
        return 0;
    u64 offset = PT_REGS_PARM3(ctx), len = PT_REGS_PARM4(ctx);
    struct fn_call call = {
        .ino = id.ino,
        .first = offset >> PAGE_SHIFT_,
        .count = pages_up(offset + len) - (offset >> PAGE_SHIFT_),
        .arg = PT_REGS_PARM2(ctx),
    };
    fn_enter(FNID_FALLOCATE, &call);
    return 0;
}

int kretprobe__kvm_gmem_fallocate(struct pt_regs *ctx)
{
    struct fn_call c;
    if (!fn_leave(FNID_FALLOCATE, &c))
        return 0;
    long ret = PT_REGS_RC(ctx);
    u16 kind = (c.arg & FALLOC_FL_PUNCH_HOLE_) ? EV_PUNCH : EV_FALLOCATE;
    u64 latency = bpf_ktime_get_ns() - c.ts;
    emit(kind, c.arg, ret < 0 ? ret : 0, c.ino, c.first, c.count, latency, 0);
    return 0;
}
#endif

#ifdef FN_RELEASE
/* int kvm_gmem_release(struct inode *, struct file *): the last close of a guest_memfd
 * (of a traced process: its inode is known). */
int kprobe__kvm_gmem_release(struct pt_regs *ctx)
{
    struct inode_id id = {};
    if (!inode_id_of((void *)PT_REGS_PARM1(ctx), &id))
        return 0;
    u64 *dev = gmem_inodes.lookup(&id.ino);
    if (dev && *dev == id.dev)
        emit(EV_RELEASE, 0, 0, id.ino, 0, id.size >> PAGE_SHIFT_, 0, 0);
    return 0;
}
#endif

#endif /* FUNCTION_TIER */
