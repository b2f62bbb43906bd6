"""What an attachment costs before any of gmemtrace's work: raw tracepoints against the
classic ones on the three hot events, and telling a guest_memfd page from any other.

The fault storm (random order) runs untraced and under small programs on
exceptions:page_fault_user and the page-cache add/delete pair:
  - raw: RAW_TRACEPOINT_PROBE doing nothing (the kernel passes its arguments; no
    record is assembled): what gmemtrace attaches to;
  - tracepoint: TRACEPOINT_PROBE doing nothing (the kernel assembles the event's record
    before the program runs, reading the folio's inode number and device for it);
  - raw + gmem: the raw ones telling guest_memfd pages apart with probe reads (folio ->
    mapping -> host inode's number and super block, as bpf/gmem_tracepoints.c does);
  - tracepoint + gmem: the classic ones doing it from the record's i_ino and s_dev
    (no probe read), each looked up in a map as gmemtrace does.
The storm measures its own fault rate: the ratio to the untraced runs (paired, the
configurations interleaved) is what each attachment costs the traced process, record
assembly included (which the kernel's BPF run-time statistics leave out).

    python -m benchmarks.attach [--pages N] [--rounds N] [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.table import Table

from gmemtrace.kernel import headers
from gmemtrace.kernel.btf import Btf
from gmemtrace.kernel.offsets import offset_defines
from gmemtrace.kernel.procfs import gmem_mappings
from gmemtrace.probes.bcc_backend import compile_text

FILEMAP = ("mm_filemap_add_to_page_cache", "mm_filemap_delete_from_page_cache")

RAW = "RAW_TRACEPOINT_PROBE(page_fault_user) { return 0; }\n" + "".join(
    f"RAW_TRACEPOINT_PROBE({event}) {{ return 0; }}\n" for event in FILEMAP
)
CLASSIC = "TRACEPOINT_PROBE(exceptions, page_fault_user) { return 0; }\n" + "".join(
    f"TRACEPOINT_PROBE(filemap, {event}) {{ return 0; }}\n" for event in FILEMAP
)
KNOWN = "BPF_HASH(known, u64, u64, 1024);\n"
# The inode behind a page-cache folio, by probe reads (what gmem_folio() does, without its
# per-CPU memo): folio->mapping, mapping->host, host->i_ino and i_sb, sb->s_dev.
RAW_GMEM = (
    KNOWN
    + "RAW_TRACEPOINT_PROBE(page_fault_user) { return 0; }\n"
    + "".join(
        f"""RAW_TRACEPOINT_PROBE({event})
{{
    void *folio = (void *)ctx->args[0], *mapping = NULL, *host = NULL, *sb = NULL;
    u64 ino = 0;
    u32 dev = 0;
    bpf_probe_read_kernel(&mapping, sizeof(mapping), folio + OFF_FOLIO_MAPPING);
    if (!mapping)
        return 0;
    bpf_probe_read_kernel(&host, sizeof(host), mapping + OFF_ADDRESS_SPACE_HOST);
    if (!host)
        return 0;
    bpf_probe_read_kernel(&ino, sizeof(ino), host + OFF_INODE_I_INO);
    bpf_probe_read_kernel(&sb, sizeof(sb), host + OFF_INODE_I_SB);
    u64 *want = known.lookup(&ino);
    if (want && sb) {{
        bpf_probe_read_kernel(&dev, sizeof(dev), sb + OFF_SUPER_BLOCK_S_DEV);
        if (*want == dev)
            return 1;
    }}
    return 0;
}}
"""
        for event in FILEMAP
    )
)
CLASSIC_GMEM = (
    KNOWN
    + "TRACEPOINT_PROBE(exceptions, page_fault_user) { return 0; }\n"
    + "".join(
        f"""TRACEPOINT_PROBE(filemap, {event})
{{
    u64 ino = args->i_ino;
    u64 *want = known.lookup(&ino);
    return want && *want == args->s_dev;
}}
"""
        for event in FILEMAP
    )
)
CONFIGS = {
    "raw": RAW,
    "tracepoint": CLASSIC,
    "raw + gmem (probe reads)": RAW_GMEM,
    "tracepoint + gmem (record fields)": CLASSIC_GMEM,
}


def storm_rate(program: str | None, defines: list[str], pages: int, rounds: int) -> float:
    """Host faults a second of one random-order storm with `program` attached."""
    with tempfile.TemporaryDirectory() as tmp:
        truth = Path(tmp) / "truth.json"
        workload = subprocess.Popen(
            [
                *(sys.executable, "-m", "gmemtrace", "workload", "fault-storm"),
                *("--pages", str(pages), "--rounds", str(rounds), "--pattern", "random"),
                *("--wait-signal", "--quiet", "-o", str(truth)),
            ]
        )
        loaded = None
        try:
            while not gmem_mappings(workload.pid):
                if workload.poll() is not None:
                    raise SystemExit("attach: the storm ended before mapping its memory")
                time.sleep(0.01)
            if program is not None:
                loaded = compile_text(program, headers.resolve(), defines)
            os.kill(workload.pid, signal.SIGUSR1)
            workload.wait()
        finally:
            if loaded is not None:
                loaded.cleanup()
            if workload.poll() is None:
                workload.kill()
                workload.wait()
        return float(json.loads(truth.read_text())["facts"]["host_faults_per_s"])


def measure(pages: int = 16384, rounds: int = 8, repeat: int = 5) -> dict[str, Any]:
    defines = [f"-D{k}={v}" for k, v in offset_defines(Btf.load()).items()]
    rates: dict[str, list[float]] = {"untraced": [], **{name: [] for name in CONFIGS}}
    for _ in range(repeat):
        rates["untraced"].append(storm_rate(None, defines, pages, rounds))
        for name, program in CONFIGS.items():
            rates[name].append(storm_rate(program, defines, pages, rounds))
    ratios = {
        name: [r / u for r, u in zip(values, rates["untraced"], strict=True)]
        for name, values in rates.items()
    }
    return {
        "kernel": os.uname().release,
        "pages": pages,
        "rounds": rounds,
        "repeat": repeat,
        "faults_per_s": {name: statistics.median(v) for name, v in rates.items()},
        "of_untraced": {name: round(statistics.median(v), 3) for name, v in ratios.items()},
        "range": {name: (round(min(v), 3), round(max(v), 3)) for name, v in ratios.items()},
    }


def table(result: dict[str, Any]) -> Table:
    out = Table(
        title=f"attachments on the three hot events, random-order storm, kernel "
        f"{result['kernel']} (medians of {result['repeat']}, paired)",
        title_justify="left",
    )
    for column in ("attachment", "faults/s", "of untraced", "range"):
        out.add_column(column, justify="left" if column == "attachment" else "right")
    for name, rate in result["faults_per_s"].items():
        low, high = result["range"][name]
        out.add_row(name, f"{rate:,.0f}", f"{result['of_untraced'][name]:.3f}", f"{low} .. {high}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=16384)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    from rich.console import Console

    result = measure(args.pages, args.rounds, args.repeat)
    Console(width=160).print(table(result))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
