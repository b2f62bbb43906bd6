"""The loader child (gmemtrace/probes/loader.py starts it): check the requirements, plan,
compile, load and attach with bcc, hand the descriptors that matter to the tracer over the
Unix socket it was given (SCM_RIGHTS), and exit without detaching: the tracer holds them."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys

from gmemtrace.errors import GmemtraceError
from gmemtrace.probes import plan as probe_plan
from gmemtrace.probes.bcc_backend import handover
from gmemtrace.probes.loader import MAX_MESSAGE
from gmemtrace.probes.program import MAPS, SOURCES, program_defines


def _serve(sock: socket.socket) -> None:
    """Load as asked, send the descriptors (or the error) back."""
    request = json.loads(sock.recv(MAX_MESSAGE))
    try:
        setup = probe_plan.prepare(request["tier"])
        defines = program_defines(
            setup.btf,
            request["ringbuf_pages"],
            probe_plan.function_events(setup.plan),
            setup.tracefs,
            probe_plan.fentry_functions(setup.plan),
        )
        meta, fds = handover(SOURCES, defines, setup.headers, MAPS)
    except GmemtraceError as err:
        sock.send(json.dumps({"error": str(err), "exit_code": err.exit_code}).encode())
        return
    except Exception as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        sock.send(json.dumps({"error": f"loading the probes failed: {reason}"}).encode())
        return
    meta["plan"] = probe_plan.plan_dicts(setup.plan)
    socket.send_fds(sock, [json.dumps(meta).encode()], fds)


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the tracer's to answer
    sock = socket.socket(fileno=int(sys.argv[1]))
    try:
        _serve(sock)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        # Not a normal exit: bcc's cleanup would detach what the tracer now holds.
        os._exit(0)


if __name__ == "__main__":
    main()
