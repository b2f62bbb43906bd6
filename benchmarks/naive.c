/* The naive design, as a floor to beat: every fault of one process goes
 * through a ring buffer to a Python callback, one call per event. */
struct fault {
    u64 ts;
    u64 address;
    u32 pid;
    u32 tid;
};

BPF_RINGBUF_OUTPUT(faults, 4096);
BPF_ARRAY(lost, u64, 1);

TRACEPOINT_PROBE(exceptions, page_fault_user)
{
    u64 id = bpf_get_current_pid_tgid();
    if ((id >> 32) != TARGET_PID)
        return 0;
    struct fault f = {.ts = bpf_ktime_get_ns(), .address = args->address,
                      .pid = id >> 32, .tid = (u32)id};
    if (faults.ringbuf_output(&f, sizeof(f), 0) < 0) {
        int zero = 0;
        u64 *n = lost.lookup(&zero);
        if (n)
            (*n)++;
    }
    return 0;
}
