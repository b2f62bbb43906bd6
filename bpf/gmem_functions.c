/* gmemtrace, function-probe tiers: fentry/fexit (-DTIER_FENTRY) or kprobes
 * (-DTIER_KPROBE) on guest_memfd functions. Best fidelity: every guest
 * fault (not only allocating ones), fault latency, releases, and the
 * in-place conversion series' functions where the kernel has them.
 *
 * Compiled after gmem_common.h (see there). Each HAVE_<function> is defined
 * by gmemtrace/probes/functions.py when the running kernel's BTF or kallsyms
 * lists that function; OFF_* offsets come from BTF.
 */

#define VM_FAULT_SIGBUS_ 0x0002

struct fault_call {
    u64 ts;
    u64 ino;
    u64 index;
    u64 addr;
};

struct range_call {
    u64 ts;
    u64 ino;
    u64 first;
    u64 count;
    u64 mode;
};

/* Per-inode counters, kept besides the stream. */
struct counters {
    u64 host_faults;
    u64 host_faults_refused;
    u64 guest_faults;
    u64 pages_allocated;
    u64 pages_freed;
};

BPF_HASH(inode_counters, u64, struct counters, 65536);

static __always_inline struct counters *counters_of(u64 ino)
{
    struct counters zero = {};
    return inode_counters.lookup_or_try_init(&ino, &zero);
}

BPF_HASH(fault_calls, u32, struct fault_call, 16384);
BPF_HASH(range_calls, u32, struct range_call, 16384);

static __always_inline u32 current_tid(void)
{
    return (u32)bpf_get_current_pid_tgid();
}

static __always_inline int traced(void)
{
    return traced_asid(bpf_get_current_pid_tgid() >> 32) != 0;
}

/* --- the shared handlers --------------------------------------------------- */

static __always_inline void fault_entry(void *vmf)
{
    void *vma = NULL, *file = NULL;
    struct inode_id id = {};
    struct fault_call call = {.ts = bpf_ktime_get_ns()};
    if (!traced())
        return;
    bpf_probe_read_kernel(&vma, sizeof(vma), vmf + OFF_VM_FAULT_VMA);
    if (vma)
        bpf_probe_read_kernel(&file, sizeof(file), vma + OFF_VMA_VM_FILE);
    if (!file_inode_id(file, &id))
        return;
    call.ino = id.ino;
    bpf_probe_read_kernel(&call.index, sizeof(call.index), vmf + OFF_VM_FAULT_PGOFF);
    bpf_probe_read_kernel(&call.addr, sizeof(call.addr), vmf + OFF_VM_FAULT_ADDRESS);
    u32 tid = current_tid();
    fault_calls.update(&tid, &call);
}

static __always_inline void fault_return(u64 ret)
{
    u32 tid = current_tid();
    struct fault_call *call = fault_calls.lookup(&tid);
    if (!call)
        return;
    struct fault_call c = *call;
    fault_calls.delete(&tid);
    u64 latency = bpf_ktime_get_ns() - c.ts;
    record_latency(EV_HOST_FAULT, latency);
    struct counters *n = counters_of(c.ino);
    if (ret & VM_FAULT_SIGBUS_) {
        if (n)
            __sync_fetch_and_add(&n->host_faults_refused, 1);
        /* Like the tracepoint tier: the fault was taken, then refused. */
        emit(EV_HOST_FAULT, 0, 0, c.ino, c.index, 1, c.addr, latency);
        emit(EV_HOST_FAULT_REFUSED, 0, -14, c.ino, c.index, 1, c.addr, latency);
        return;
    }
    if (n)
        __sync_fetch_and_add(&n->host_faults, 1);
    if (streaming())
        emit(EV_HOST_FAULT, 0, 0, c.ino, c.index, 1, c.addr, latency);
}

static __always_inline void guest_fault_entry(void *slot, u64 gfn)
{
    void *file = NULL;
    u64 base_gfn = 0, pgoff = 0;
    struct inode_id id = {};
    struct range_call call = {.ts = bpf_ktime_get_ns()};
    if (!traced())
        return;
    bpf_probe_read_kernel(&file, sizeof(file), slot + OFF_SLOT_GMEM_FILE);
    if (!file_inode_id(file, &id))
        return;
    bpf_probe_read_kernel(&base_gfn, sizeof(base_gfn), slot + OFF_SLOT_BASE_GFN);
    bpf_probe_read_kernel(&pgoff, sizeof(pgoff), slot + OFF_SLOT_GMEM_PGOFF);
    call.ino = id.ino;
    call.first = gfn - base_gfn + pgoff;
    call.count = 1;
    call.mode = gfn;
    u32 tid = current_tid();
    range_calls.update(&tid, &call);
}

static __always_inline void range_return(u16 kind, long ret)
{
    u32 tid = current_tid();
    struct range_call *call = range_calls.lookup(&tid);
    if (!call)
        return;
    struct range_call c = *call;
    range_calls.delete(&tid);
    u64 latency = bpf_ktime_get_ns() - c.ts;
    record_latency(kind, latency);
    if (kind == EV_GUEST_FAULT) {
        struct counters *n = counters_of(c.ino);
        if (n && ret == 0)
            __sync_fetch_and_add(&n->guest_faults, 1);
        if (streaming() || ret != 0)
            emit(EV_GUEST_FAULT, 0, ret, c.ino, c.first, 1, c.mode, latency);
        return;
    }
    emit(kind, c.mode, ret, c.ino, c.first, c.count, 0, latency);
}

static __always_inline void fallocate_entry(void *file, u64 mode, u64 offset, u64 len)
{
    struct inode_id id = {};
    if (!traced() || !file_inode_id(file, &id))
        return;
    struct range_call call = {
        .ts = bpf_ktime_get_ns(),
        .ino = id.ino,
        .first = offset >> PAGE_SHIFT_,
        .count = (offset + len + 4095) / 4096 - (offset >> PAGE_SHIFT_),
        .mode = mode,
    };
    u32 tid = current_tid();
    range_calls.update(&tid, &call);
}

static __always_inline void convert_entry(void *file, u64 start, u64 nr_pages, int shared)
{
    struct inode_id id = {};
    if (!traced() || !file_inode_id(file, &id))
        return;
    struct range_call call = {
        .ts = bpf_ktime_get_ns(),
        .ino = id.ino,
        .first = start,
        .count = nr_pages,
        .mode = shared ? 0 : CONV_TO_PRIVATE,
    };
    u32 tid = current_tid();
    range_calls.update(&tid, &call);
}

static __always_inline void release_entry(void *inode)
{
    struct inode_id id = {};
    if (inode_id_of(inode, &id))
        emit(EV_RELEASE, 0, 0, id.ino, 0, id.size >> PAGE_SHIFT_, 0, 0);
}

/* --- attach points ------------------------------------------------------------ */

#if defined(TIER_FENTRY)

#ifdef HAVE_kvm_gmem_fault_user_mapping
KFUNC_PROBE(kvm_gmem_fault_user_mapping, void *vmf)
{
    fault_entry(vmf);
    return 0;
}
KRETFUNC_PROBE(kvm_gmem_fault_user_mapping, void *vmf, u32 ret)
{
    fault_return(ret);
    return 0;
}
#endif

#ifdef HAVE_kvm_gmem_get_pfn
KFUNC_PROBE(kvm_gmem_get_pfn, void *kvm, void *slot, u64 gfn)
{
    guest_fault_entry(slot, gfn);
    return 0;
}
KRETFUNC_PROBE(kvm_gmem_get_pfn, void *kvm, void *slot, u64 gfn, void *pfn, void *page,
               void *max_order, int ret)
{
    range_return(EV_GUEST_FAULT, ret);
    return 0;
}
#endif

#ifdef HAVE_kvm_gmem_fallocate
KFUNC_PROBE(kvm_gmem_fallocate, void *file, int mode, s64 offset, s64 len)
{
    fallocate_entry(file, mode, offset, len);
    return 0;
}
KRETFUNC_PROBE(kvm_gmem_fallocate, void *file, int mode, s64 offset, s64 len, long ret)
{
    range_return((mode & 0x02) ? EV_PUNCH : EV_FALLOCATE, ret);
    return 0;
}
#endif

#ifdef HAVE_kvm_gmem_release
KFUNC_PROBE(kvm_gmem_release, void *inode, void *file)
{
    release_entry(inode);
    return 0;
}
#endif

/* The in-place conversion series (RFC v2 names). */
#ifdef HAVE_kvm_gmem_convert_range
KFUNC_PROBE(kvm_gmem_convert_range, void *file, u64 start, u64 nr_pages, bool shared)
{
    convert_entry(file, start, nr_pages, shared);
    return 0;
}
KRETFUNC_PROBE(kvm_gmem_convert_range, void *file, u64 start, u64 nr_pages, bool shared,
               void *error_index, int ret)
{
    range_return(EV_CONVERT, ret);
    return 0;
}
#endif

#ifdef HAVE_kvm_gmem_shareability_setup
KFUNC_PROBE(kvm_gmem_shareability_setup, void *private, s64 size, u64 flags)
{
    if (traced())
        emit(EV_SHAREABILITY_SETUP, 0, 0, 0, 0, size >> PAGE_SHIFT_, flags, 0);
    return 0;
}
#endif

#elif defined(TIER_KPROBE)

#ifdef HAVE_kvm_gmem_fault_user_mapping
int kprobe__kvm_gmem_fault_user_mapping(struct pt_regs *ctx)
{
    fault_entry((void *)PT_REGS_PARM1(ctx));
    return 0;
}
int kretprobe__kvm_gmem_fault_user_mapping(struct pt_regs *ctx)
{
    fault_return(PT_REGS_RC(ctx));
    return 0;
}
#endif

#ifdef HAVE_kvm_gmem_get_pfn
int kprobe__kvm_gmem_get_pfn(struct pt_regs *ctx)
{
    guest_fault_entry((void *)PT_REGS_PARM2(ctx), PT_REGS_PARM3(ctx));
    return 0;
}
int kretprobe__kvm_gmem_get_pfn(struct pt_regs *ctx)
{
    range_return(EV_GUEST_FAULT, (int)PT_REGS_RC(ctx));
    return 0;
}
#endif

#ifdef HAVE_kvm_gmem_fallocate
int kprobe__kvm_gmem_fallocate(struct pt_regs *ctx)
{
    fallocate_entry((void *)PT_REGS_PARM1(ctx), PT_REGS_PARM2(ctx), PT_REGS_PARM3(ctx),
                    PT_REGS_PARM4(ctx));
    return 0;
}
int kretprobe__kvm_gmem_fallocate(struct pt_regs *ctx)
{
    u32 tid = current_tid();
    struct range_call *call = range_calls.lookup(&tid);
    u16 kind = (call && (call->mode & 0x02)) ? EV_PUNCH : EV_FALLOCATE;
    range_return(kind, PT_REGS_RC(ctx));
    return 0;
}
#endif

#ifdef HAVE_kvm_gmem_release
int kprobe__kvm_gmem_release(struct pt_regs *ctx)
{
    release_entry((void *)PT_REGS_PARM1(ctx));
    return 0;
}
#endif

#ifdef HAVE_kvm_gmem_convert_range
int kprobe__kvm_gmem_convert_range(struct pt_regs *ctx)
{
    convert_entry((void *)PT_REGS_PARM1(ctx), PT_REGS_PARM2(ctx), PT_REGS_PARM3(ctx),
                  (int)PT_REGS_PARM4(ctx));
    return 0;
}
int kretprobe__kvm_gmem_convert_range(struct pt_regs *ctx)
{
    range_return(EV_CONVERT, (int)PT_REGS_RC(ctx));
    return 0;
}
#endif

#ifdef HAVE_kvm_gmem_shareability_setup
int kprobe__kvm_gmem_shareability_setup(struct pt_regs *ctx)
{
    if (traced())
        emit(EV_SHAREABILITY_SETUP, 0, 0, 0, 0, (s64)PT_REGS_PARM2(ctx) >> PAGE_SHIFT_,
             PT_REGS_PARM3(ctx), 0);
    return 0;
}
#endif

#else
#error "define TIER_FENTRY or TIER_KPROBE"
#endif
