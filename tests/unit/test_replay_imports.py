"""Reading a trace is pure: no ioctl code, no libc, no environment read at import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "data"

SCRIPT = """
import sys
import gmemtrace
from gmemtrace import plots
from gmemtrace.sinks import dashboard, interval, report_table
trace = gmemtrace.read_trace(sys.argv[1])
trace.report, trace.inodes, trace._repr_html_()
loaded = sorted(m for m in sys.modules if m.startswith("gmemtrace"))
print("\\n".join(loaded))
"""


def test_replaying_a_trace_imports_no_kernel_calls() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(DATA / "mixed.trace")],
        capture_output=True,
        text=True,
        check=True,
    )
    loaded = set(result.stdout.split())
    assert "gmemtrace.kernel.uapi" in loaded  # the constants, as data
    assert not loaded & {"gmemtrace.kernel.kvm", "gmemtrace.probes.bcc_backend", "bcc"}
