"""The naive per-event consumer: bcc's ring buffer with a Python callback per fault.

python -m benchmarks.naive PID: counts the faults of PID until SIGINT, then
prints "events N lost M".
"""

from __future__ import annotations

import ctypes
import signal
import sys
from pathlib import Path

from gmemtrace.kernel import headers
from gmemtrace.probes.bcc_backend import compile_text


def main() -> int:
    pid = int(sys.argv[1])
    bpf = compile_text(
        (Path(__file__).parent / "naive.c").read_text(),
        headers.resolve(),
        [f"-DTARGET_PID={pid}"],
    )
    seen = {"events": 0, "last_address": 0}

    def on_fault(ctx: object, data: int, size: int) -> None:
        event = bpf[b"faults"].event(data)  # decode one record, as bcc tools do
        seen["events"] += 1
        seen["last_address"] = event.address

    bpf[b"faults"].open_ring_buffer(on_fault)
    stop = {"now": False}
    signal.signal(signal.SIGINT, lambda *_: stop.update(now=True))
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    print("attached", flush=True)
    while not stop["now"]:
        bpf.ring_buffer_poll(100)
    bpf.ring_buffer_consume()
    lost = bpf[b"lost"][ctypes.c_int(0)].value
    print(f"events {seen['events']} lost {lost}", flush=True)
    bpf.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
