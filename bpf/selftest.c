/* Tiny programs, one per BPF program type, that `gmemtrace doctor` loads to
 * learn what this kernel allows. Exactly one CHECK_* is defined per build. */

#if defined(CHECK_TRACEPOINT)
TRACEPOINT_PROBE(filemap, mm_filemap_add_to_page_cache)
{
    return 0;
}

#elif defined(CHECK_RAW_TRACEPOINT)
RAW_TRACEPOINT_PROBE(sched_process_exit)
{
    return 0;
}

#elif defined(CHECK_FENTRY)
/* FENTRY_TARGET comes from -D; the extra macro level expands it before
 * KFUNC_PROBE pastes it into the program name. */
#define FENTRY_OF(fn) KFUNC_PROBE(fn)
FENTRY_OF(FENTRY_TARGET)
{
    return 0;
}

#elif defined(CHECK_KPROBE)
int check_kprobe(struct pt_regs *ctx)
{
    return 0;
}

#elif defined(CHECK_RINGBUF)
BPF_RINGBUF_OUTPUT(check_events, 1);

RAW_TRACEPOINT_PROBE(sched_process_exit)
{
    u32 pid = bpf_get_current_pid_tgid() >> 32;
    check_events.ringbuf_output(&pid, sizeof(pid), 0);
    return 0;
}

#else
#error "define one CHECK_* macro"
#endif
