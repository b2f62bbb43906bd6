/* gmemtrace, function tier: probes on the guest_memfd functions themselves.
 *
 * Compiled into the tracepoint program (one ring buffer, one set of maps)
 * for the events the plan gave this tier: each FN_<EVENT> define says the
 * event comes from here, and the tracepoint programs leave it out. What a
 * function sees that no tracepoint does: every guest fault (kvm_gmem_get_pfn,
 * not only the allocating ones) with its page and latency, the last close of a
 * guest_memfd (kvm_gmem_release), and on kernels with in-place conversion the
 * host fault handler's answer page by page (kvm_gmem_fault_user_mapping), each
 * conversion request on the guest_memfd (kvm_gmem_ioctl) with the page that blocked
 * it (__kvm_gmem_set_attributes), and each new inode's initial state.
 *
 * Each probe is one body taking plain arguments, attached one of two ways:
 * fentry/fexit where the plan chose fentry for its function (FENTRY_<function>
 * defined: the function is in vmlinux's BTF and fentry loads), else a kprobe and
 * a kretprobe.
 *
 * Defines from gmemtrace/probes/program.py: FN_* (events), HAVE_<function>
 * for each function the running kernel has (BTF or kallsyms), FENTRY_<function>,
 * OFF_SLOT_*, OFF_VMF_* and OFF_* offsets from BTF (the kvm module's, where KVM is
 * a module); FUNCTION_TIER when any event comes from here (else this file
 * compiles to nothing).
 */
#ifdef FUNCTION_TIER

/* What an entry probe keeps for its return probe, per thread and function. */
struct fn_call {
    u64 ts;
    u64 ptr; /* the function's struct argument (args, slot, vmf), or an out pointer */
    u64 ino;
    u64 first;
    u64 count;
    u64 arg; /* gfn, fallocate's mode, a fault's address, a conversion's attributes */
};
BPF_HASH(fn_calls, u64, struct fn_call, 16384);

#define FNID_GET_PFN 1
#define FNID_CREATE 2
#define FNID_BIND 3
#define FNID_FALLOCATE 4
#define FNID_FAULT 5
#define FNID_SET_ATTRIBUTES 6
#define FNID_IOCTL 7
#define FNID_BLOCKED 8 /* not a function: the page that blocked this thread's request */

#define VM_FAULT_SIGBUS_ 0x2
#define FAULT_FLAG_WRITE_ 0x1 /* enum fault_flag: vm_fault.flags */
#define VM_FAULT_RETRY_ 0x400
#define KVM_MEMORY_ATTRIBUTE_PRIVATE_FN (1ULL << 3)
#define GUEST_MEMFD_FLAG_INIT_SHARED_ (1ULL << 1)

/* fentry when the plan chose it for the function, a kprobe pair otherwise: `enter`
 * and `leave` are the bodies, called with the function's arguments as u64 (and,
 * leaving, its return value). */
#define KPROBE1(fn, enter, leave)                                                    \
    int kprobe__##fn(struct pt_regs *ctx) { return enter(PT_REGS_PARM1(ctx)); }      \
    int kretprobe__##fn(struct pt_regs *ctx) { return leave(PT_REGS_RC(ctx)); }
#define FENTRY1(fn, enter, leave)                                                    \
    KFUNC_PROBE(fn, u64 a1) { return enter(a1); }                                    \
    KRETFUNC_PROBE(fn, u64 a1, long ret) { return leave(ret); }
#define KPROBE2(fn, enter, leave)                                                    \
    int kprobe__##fn(struct pt_regs *ctx)                                            \
    {                                                                                \
        return enter(PT_REGS_PARM1(ctx), PT_REGS_PARM2(ctx));                        \
    }                                                                                \
    int kretprobe__##fn(struct pt_regs *ctx) { return leave(PT_REGS_RC(ctx)); }
#define FENTRY2(fn, enter, leave)                                                    \
    KFUNC_PROBE(fn, u64 a1, u64 a2) { return enter(a1, a2); }                        \
    KRETFUNC_PROBE(fn, u64 a1, u64 a2, long ret) { return leave(ret); }
#define KPROBE3(fn, enter, leave)                                                    \
    int kprobe__##fn(struct pt_regs *ctx)                                            \
    {                                                                                \
        return enter(PT_REGS_PARM1(ctx), PT_REGS_PARM2(ctx), PT_REGS_PARM3(ctx));    \
    }                                                                                \
    int kretprobe__##fn(struct pt_regs *ctx) { return leave(PT_REGS_RC(ctx)); }
#define FENTRY3(fn, enter, leave)                                                    \
    KFUNC_PROBE(fn, u64 a1, u64 a2, u64 a3) { return enter(a1, a2, a3); }            \
    KRETFUNC_PROBE(fn, u64 a1, u64 a2, u64 a3, long ret) { return leave(ret); }
#define KPROBE4(fn, enter, leave)                                                    \
    int kprobe__##fn(struct pt_regs *ctx)                                            \
    {                                                                                \
        return enter(PT_REGS_PARM1(ctx), PT_REGS_PARM2(ctx), PT_REGS_PARM3(ctx),     \
                     PT_REGS_PARM4(ctx));                                            \
    }                                                                                \
    int kretprobe__##fn(struct pt_regs *ctx) { return leave(PT_REGS_RC(ctx)); }
#define FENTRY4(fn, enter, leave)                                                    \
    KFUNC_PROBE(fn, u64 a1, u64 a2, u64 a3, u64 a4) { return enter(a1, a2, a3, a4); } \
    KRETFUNC_PROBE(fn, u64 a1, u64 a2, u64 a3, u64 a4, long ret) { return leave(ret); }
#define KPROBE5(fn, enter, leave)                                                    \
    int kprobe__##fn(struct pt_regs *ctx)                                            \
    {                                                                                \
        return enter(PT_REGS_PARM1(ctx), PT_REGS_PARM2(ctx), PT_REGS_PARM3(ctx),     \
                     PT_REGS_PARM4(ctx), PT_REGS_PARM5(ctx));                        \
    }                                                                                \
    int kretprobe__##fn(struct pt_regs *ctx) { return leave(PT_REGS_RC(ctx)); }
#define FENTRY5(fn, enter, leave)                                                    \
    KFUNC_PROBE(fn, u64 a1, u64 a2, u64 a3, u64 a4, u64 a5)                          \
    {                                                                                \
        return enter(a1, a2, a3, a4, a5);                                            \
    }                                                                                \
    KRETFUNC_PROBE(fn, u64 a1, u64 a2, u64 a3, u64 a4, u64 a5, long ret)             \
    {                                                                                \
        return leave(ret);                                                           \
    }

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

/* The entry's record, taken out of the map (0: the entry was not traced). */
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
static __always_inline int get_pfn_enter(u64 kvm, u64 slot, u64 gfn)
{
    struct fn_call call = {};
    if (fn_traced() && slot_page((void *)slot, gfn, &call))
        fn_enter(FNID_GET_PFN, &call);
    return 0;
}

static __always_inline int get_pfn_leave(long ret)
{
    struct fn_call c;
    if (!fn_leave(FNID_GET_PFN, &c))
        return 0;
    u64 latency = bpf_ktime_get_ns() - c.ts;
    emit(EV_GUEST_FAULT, GUEST_FAULT_TIMED, (s32)ret, c.ino, c.first, 1, c.arg << PAGE_SHIFT_,
         latency);
    return 0;
}
#ifdef FENTRY_kvm_gmem_get_pfn
FENTRY3(kvm_gmem_get_pfn, get_pfn_enter, get_pfn_leave)
#else
KPROBE3(kvm_gmem_get_pfn, get_pfn_enter, get_pfn_leave)
#endif
#endif

#if defined(FN_CREATE) || defined(FN_SHAREABILITY_SETUP)
/* int kvm_gmem_create(struct kvm *, struct kvm_create_guest_memfd *args): the new fd.
 * Where the kernel keeps shareability in the inode, this is also where each page's
 * initial state is set (kvm_gmem_init_inode, inlined here): private, or shared with
 * GUEST_MEMFD_FLAG_INIT_SHARED. */
static __always_inline int create_enter(u64 kvm, u64 args_ptr)
{
    struct fn_call call = {};
    u64 args[2] = {}; /* uAPI struct kvm_create_guest_memfd: size, flags */
    if (!fn_traced())
        return 0;
    bpf_probe_read_kernel(args, sizeof(args), (void *)args_ptr);
    call.count = args[0] >> PAGE_SHIFT_;
    call.arg = args[1];
    fn_enter(FNID_CREATE, &call);
    return 0;
}

static __always_inline int create_leave(long ret)
{
    struct fn_call c;
    struct inode_id inode = {};
    if (!fn_leave(FNID_CREATE, &c))
        return 0;
    if (ret >= 0 && file_inode_id(fd_file(ret), &inode))
        gmem_inodes.update(&inode.ino, &inode.dev);
#ifdef FN_CREATE
    emit(EV_CREATE, 0, ret < 0 ? ret : 0, inode.ino, 0, c.count, c.arg, inode.dev);
#endif
#ifdef FN_SHAREABILITY_SETUP
    /* flags: 1 when the pages start private; arg: the creation flags */
    if (ret >= 0)
        emit(EV_SHAREABILITY_SETUP, (c.arg & GUEST_MEMFD_FLAG_INIT_SHARED_) ? 0 : 1, 0,
             inode.ino, 0, c.count, c.arg, 0);
#endif
    return 0;
}
#ifdef FENTRY_kvm_gmem_create
FENTRY2(kvm_gmem_create, create_enter, create_leave)
#else
KPROBE2(kvm_gmem_create, create_enter, create_leave)
#endif
#endif

#ifdef FN_BIND
/* kvm_gmem_bind(struct kvm *, struct kvm_memory_slot *, fd, offset) in mainline;
 * kvm_gmem_commit_memory_region(struct kvm *, struct kvm_memory_slot *) in some
 * stable kernels (Debian's 6.12): either way the memslot, filled in on success. */
static __always_inline int bind_enter(u64 kvm, u64 slot)
{
    struct fn_call call = {.ptr = slot};
    if (fn_traced())
        fn_enter(FNID_BIND, &call);
    return 0;
}

static __always_inline int bind_leave(long ret)
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
    emit(EV_BIND, 0, (s32)ret, c.ino, c.first, npages, base_gfn << PAGE_SHIFT_, id);
    return 0;
}

#if defined(HAVE_kvm_gmem_bind)
#ifdef FENTRY_kvm_gmem_bind
FENTRY2(kvm_gmem_bind, bind_enter, bind_leave)
#else
KPROBE2(kvm_gmem_bind, bind_enter, bind_leave)
#endif
#else
#ifdef FENTRY_kvm_gmem_commit_memory_region
FENTRY2(kvm_gmem_commit_memory_region, bind_enter, bind_leave)
#else
KPROBE2(kvm_gmem_commit_memory_region, bind_enter, bind_leave)
#endif
#endif
#endif

#ifdef FN_PUNCH
/* long kvm_gmem_fallocate(struct file *, int mode, loff_t offset, loff_t len). */
static __always_inline int fallocate_enter(u64 file, u64 mode, u64 offset, u64 len)
{
    struct inode_id id = {};
    if (!fn_traced() || !file_inode_id((void *)file, &id))
        return 0;
    struct fn_call call = {
        .ino = id.ino,
        .first = offset >> PAGE_SHIFT_,
        .count = pages_up(offset + len) - (offset >> PAGE_SHIFT_),
        .arg = mode,
    };
    fn_enter(FNID_FALLOCATE, &call);
    return 0;
}

static __always_inline int fallocate_leave(long ret)
{
    struct fn_call c;
    if (!fn_leave(FNID_FALLOCATE, &c))
        return 0;
    u16 kind = (c.arg & FALLOC_FL_PUNCH_HOLE_) ? EV_PUNCH : EV_FALLOCATE;
    u64 latency = bpf_ktime_get_ns() - c.ts;
    emit(kind, c.arg, ret < 0 ? ret : 0, c.ino, c.first, c.count, latency, 0);
    return 0;
}
#ifdef FENTRY_kvm_gmem_fallocate
FENTRY4(kvm_gmem_fallocate, fallocate_enter, fallocate_leave)
#else
KPROBE4(kvm_gmem_fallocate, fallocate_enter, fallocate_leave)
#endif
#endif

#ifdef FN_RELEASE
/* int kvm_gmem_release(struct inode *, struct file *): the last close of a guest_memfd
 * (of a traced process: its inode is known). Only its entry matters. */
static __always_inline int release_enter(u64 inode_ptr, u64 file)
{
    struct inode_id id = {};
    if (!inode_id_of((void *)inode_ptr, &id))
        return 0;
    u64 *dev = gmem_inodes.lookup(&id.ino);
    if (dev && *dev == id.dev)
        emit(EV_RELEASE, 0, 0, id.ino, 0, id.size >> PAGE_SHIFT_, 0, 0);
    return 0;
}
#ifdef FENTRY_kvm_gmem_release
KFUNC_PROBE(kvm_gmem_release, u64 a1, u64 a2) { return release_enter(a1, a2); }
#else
int kprobe__kvm_gmem_release(struct pt_regs *ctx)
{
    return release_enter(PT_REGS_PARM1(ctx), PT_REGS_PARM2(ctx));
}
#endif
#endif

#if defined(FN_HOST_FAULT) || defined(FN_HOST_FAULT_REFUSED)
/* vm_fault_t kvm_gmem_fault_user_mapping(struct vm_fault *vmf): a host fault on a
 * guest_memfd mapping, answered page by page (VM_FAULT_SIGBUS: the page is private,
 * or past the end of the file). VM_FAULT_RETRY is no answer: the fault comes again.
 * As the tracepoint tier has it, every answered fault is a host fault event, and a
 * SIGBUS is that fault refused as well (the model counts it refused, not served).
 * Read at the return (fexit has the argument there, and the vm_fault is the caller's:
 * still alive); a kprobe pair keeps the argument in between. */
static __always_inline int fault_answered(u64 vmf, long ret)
{
    u32 answer = (u32)ret;
    if (answer & VM_FAULT_RETRY_)
        return 0;
    u32 asid = traced_asid(bpf_get_current_pid_tgid() >> 32);
    if (!asid)
        return 0;
    void *vma = NULL, *file = NULL;
    struct inode_id id = {};
    u64 index = 0, addr = 0;
    bpf_probe_read_kernel(&vma, sizeof(vma), (void *)vmf + OFF_VMF_VMA);
    bpf_probe_read_kernel(&index, sizeof(index), (void *)vmf + OFF_VMF_PGOFF);
    bpf_probe_read_kernel(&addr, sizeof(addr), (void *)vmf + OFF_VMF_ADDRESS);
    if (vma)
        bpf_probe_read_kernel(&file, sizeof(file), vma + OFF_VMA_VM_FILE);
    if (!file_inode_id(file, &id))
        return 0;
#ifdef FN_HOST_FAULT
    if (streaming())
        emit_hot(bpf_ktime_get_ns(), EV_HOST_FAULT, 0, 0, id.ino, index, 1, addr, asid);
    else
        count_fault(id.ino, index, 0, addr, asid);
#endif
#ifdef FN_HOST_FAULT_REFUSED
    if (answer & VM_FAULT_SIGBUS_) {
        u32 fault_flags = 0; /* the access: read only for a refusal */
        bpf_probe_read_kernel(&fault_flags, sizeof(fault_flags), (void *)vmf + OFF_VMF_FLAGS);
        u16 access = ACCESS_KNOWN | ((fault_flags & FAULT_FLAG_WRITE_) ? ACCESS_WRITE : 0);
        emit(EV_HOST_FAULT_REFUSED, access, -14 /* EFAULT */, id.ino, index, 1, addr, 0);
    }
#endif
    return 0;
}

#ifdef FENTRY_kvm_gmem_fault_user_mapping
KRETFUNC_PROBE(kvm_gmem_fault_user_mapping, u64 vmf, long ret)
{
    return fault_answered(vmf, ret);
}
#else
int kprobe__kvm_gmem_fault_user_mapping(struct pt_regs *ctx)
{
    struct fn_call call = {.ptr = PT_REGS_PARM1(ctx)};
    if (fn_traced())
        fn_enter(FNID_FAULT, &call);
    return 0;
}

int kretprobe__kvm_gmem_fault_user_mapping(struct pt_regs *ctx)
{
    struct fn_call c;
    if (!fn_leave(FNID_FAULT, &c))
        return 0;
    return fault_answered(c.ptr, PT_REGS_RC(ctx));
}
#endif
#endif

#ifdef FN_CONVERT
/* long kvm_gmem_ioctl(struct file *, unsigned int ioctl, unsigned long arg): each
 * KVM_SET_MEMORY_ATTRIBUTES2 request on a guest_memfd (the in-place conversion series),
 * as the caller asked it and as the kernel answered, invalid ones included. */
static __always_inline int gmem_ioctl_enter(u64 file, u64 cmd, u64 arg)
{
    struct inode_id id = {};
    if ((u32)cmd != CMD_SET_MEMORY_ATTRIBUTES2 || !fn_traced() ||
        !file_inode_id((void *)file, &id))
        return 0;
    u64 request[3] = {}; /* uAPI struct kvm_memory_attributes2: offset, size, attributes */
    bpf_probe_read_user(request, sizeof(request), (void *)arg);
    struct fn_call call = {
        .ino = id.ino,
        .first = request[0] >> PAGE_SHIFT_,
        .count = pages_up(request[1]),
        .arg = request[2],
    };
    struct fn_call none = {};
    u64 blocked = fn_key(FNID_BLOCKED);
    fn_calls.update(&blocked, &none); /* no page blocked it (yet) */
    fn_enter(FNID_IOCTL, &call);
    return 0;
}

static __always_inline int gmem_ioctl_leave(long ret)
{
    struct fn_call c, blocked = {};
    if (!fn_leave(FNID_IOCTL, &c))
        return 0;
    fn_leave(FNID_BLOCKED, &blocked);
    u64 latency = bpf_ktime_get_ns() - c.ts;
    u16 flags = CONV_IFACE_ATTRIBUTES2;
    if (c.arg & KVM_MEMORY_ATTRIBUTE_PRIVATE_FN)
        flags |= CONV_TO_PRIVATE;
    if ((s32)ret != 0 && blocked.count)
        flags |= CONV_BLOCKED;
    emit(EV_CONVERT, flags, (s32)ret, c.ino, c.first, c.count,
         (flags & CONV_BLOCKED) ? blocked.first : 0, latency);
    return 0;
}

/* int __kvm_gmem_set_attributes(struct inode *, pgoff_t start, size_t nr_pages,
 * u64 attrs, pgoff_t *err_index): where a request reaches the inode. Refused (-EAGAIN:
 * a page had unexpected references; -ENOMEM), *err_index is the page that blocked it,
 * kept for the request's return. */
static __always_inline int blocked_by(long ret, u64 err_index)
{
    u64 key = fn_key(FNID_BLOCKED);
    struct fn_call *slot = fn_calls.lookup(&key);
    if (!slot || (s32)ret == 0 || !err_index)
        return 0;
    bpf_probe_read_kernel(&slot->first, sizeof(slot->first), (void *)err_index);
    slot->count = 1;
    return 0;
}

#ifdef FENTRY_kvm_gmem_ioctl
FENTRY3(kvm_gmem_ioctl, gmem_ioctl_enter, gmem_ioctl_leave)
KRETFUNC_PROBE(__kvm_gmem_set_attributes, u64 a1, u64 a2, u64 a3, u64 a4, u64 a5, long ret)
{
    return blocked_by(ret, a5);
}
#else
KPROBE3(kvm_gmem_ioctl, gmem_ioctl_enter, gmem_ioctl_leave)
int kprobe____kvm_gmem_set_attributes(struct pt_regs *ctx)
{
    struct fn_call call = {.ptr = PT_REGS_PARM5(ctx)};
    if (fn_traced())
        fn_enter(FNID_SET_ATTRIBUTES, &call);
    return 0;
}

int kretprobe____kvm_gmem_set_attributes(struct pt_regs *ctx)
{
    struct fn_call c;
    if (!fn_leave(FNID_SET_ATTRIBUTES, &c))
        return 0;
    return blocked_by(PT_REGS_RC(ctx), c.ptr);
}
#endif
#endif

#endif /* FUNCTION_TIER */
