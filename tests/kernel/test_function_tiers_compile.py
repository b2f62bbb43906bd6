"""Tiers 1 and 2 compile here even where the kernel refuses to load them.

With every probed function enabled (mainline and the conversion series), the
program must get past clang: any failure has to come from the kernel (load or
attach), never from compilation.
"""

from __future__ import annotations

import pytest

from gmemtrace.kernel import headers
from gmemtrace.kernel.btf import Btf
from gmemtrace.probes import functions
from gmemtrace.probes.bcc_backend import captured_stderr

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("bpf_ready")]


@pytest.mark.parametrize("tier", ["fentry", "kprobe"])
def test_function_probes_compile_for_every_function(tier: str) -> None:
    program = None
    failure = ""
    with captured_stderr() as stderr:
        try:
            program = functions.load(Btf.load(), headers.resolve(), tier, set(functions.PROBED))
        except Exception as err:
            failure = str(err)
        finally:
            if program is not None:
                program.cleanup()
    compile_errors = [line for line in stderr if "error:" in line]
    assert not compile_errors, compile_errors[:5]
    assert "Failed to compile" not in failure
