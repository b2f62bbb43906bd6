"""`make bench`: gmemtrace's overhead and throughput, side by side with the alternatives.

Each configuration traces the same fault-storm, touching its pages in order and in
a random order (a fixed permutation: no two consecutive faults on neighbouring
pages): the workload maps its guest_memfd and waits (SIGUSR1); the tracer
attaches to its pid; the storm runs; the workload measures its own fault rate.
The tracer's CPU time and peak RSS come from wait4(). Repetitions interleave the
configurations and the orders, so drift in the machine spreads over all of them;
each ratio is to the untraced run of the same repetition and order. Then the
decoder alone (a recorded byte stream, no kernel), the model at scale, and where
the kernel-side time goes (benchmarks/profile.py: each BPF program's time per event)
and what each kind of attachment costs (benchmarks/attach.py: raw against classic
tracepoints, probe reads against record fields).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from benchmarks import attach, decoder, profile, scale
from benchmarks.soak import rss_mb
from gmemtrace.kernel.procfs import gmem_mappings

PY = sys.executable
GMEMTRACE = [PY, "-m", "gmemtrace"]


@dataclass
class Run:
    faults_per_s: float
    events: int | None
    lost: int | None
    cpu_s: float | None
    rss_mb: float | None  # peak, of the tracer and the children it waited for (a loader's)
    steady_rss_mb: float | None = None  # the tracer's own, at the end of the storm


@dataclass
class Config:
    name: str
    command: Callable[[int, Path], list[str]] | None  # pid, scratch dir -> tracer argv
    stops_itself: bool = True  # ends when the target exits (else: SIGINT)
    bpf_programs: int = 1  # programs to wait for before releasing the storm (0: perf)
    ready_text: str = ""  # or what the tracer prints once it is attached
    count: Callable[[str, Path], tuple[int | None, int | None]] = lambda out, d: (None, None)
    runs: dict[str, list[Run]] = field(default_factory=dict)  # by storm order
    absent: str = ""
    # Read what the tracer holds before it is stopped (the exporter's /metrics): out, dir
    before_stop: Callable[[str, Path], None] = lambda out, d: None


def _bpf_program_count() -> int:
    out = subprocess.run(
        ["bpftool", "prog", "show", "--json"], capture_output=True, text=True, check=False
    ).stdout
    return len(json.loads(out or "[]"))


def _gmemtrace_live_counts(out: str, _: Path) -> tuple[int | None, int | None]:
    """The view counts in the kernel: the faults and page events its totals stand for."""
    last = json.loads(out.strip().splitlines()[-1])
    hot = ("host_faults", "host_faults_refused", "guest_faults", "pages_allocated", "pages_freed")
    events = sum(inode["totals"][name] for inode in last["inodes"] for name in hot)
    return events, int(last["lost_events"])


def _gmemtrace_record_counts(_: str, scratch: Path) -> tuple[int | None, int | None]:
    from gmemtrace.events import Kind
    from gmemtrace.tracefile import read_trace_file

    data = read_trace_file(scratch / "bench.trace")
    mine = (data.events["kind"] != Kind.LOST) & (data.events["kind"] != Kind.END)
    return int(mine.sum()), data.lost_events


def _scrape_exporter(out: str, scratch: Path) -> None:
    """The exporter's /metrics once the storm is over (the URL is in its ready line)."""
    import urllib.request

    url = re.search(r"(http://\S+/metrics)", out)
    if url is None:
        raise RuntimeError(f"the exporter named no URL: {out}")
    time.sleep(0.5)  # a few drains after the storm
    with urllib.request.urlopen(url[1], timeout=10) as response:
        (scratch / "metrics.txt").write_bytes(response.read())


def _exporter_counts(_: str, scratch: Path) -> tuple[int | None, int | None]:
    """Faults and page events in the last scrape, as the live view counts them."""
    from prometheus_client.parser import text_string_to_metric_families

    hot = {
        "gmemtrace_host_faults",
        "gmemtrace_host_faults_refused",
        "gmemtrace_guest_faults",
        "gmemtrace_pages_allocated",
        "gmemtrace_pages_freed",
    }
    events = lost = 0
    for family in text_string_to_metric_families((scratch / "metrics.txt").read_text()):
        for sample in family.samples:
            if sample.name.removesuffix("_total") in hot and sample.name.endswith("_total"):
                events += int(sample.value)
            elif sample.name == "gmemtrace_lost_events_total":
                lost += int(sample.value)
    return events, lost


def _bpftrace_counts(out: str, _: Path) -> tuple[int | None, int | None]:
    found = re.search(r"@faults: (\d+)", out)
    return (int(found[1]) if found else 0), 0


def _naive_counts(out: str, _: Path) -> tuple[int | None, int | None]:
    found = re.search(r"events (\d+) lost (\d+)", out)
    return (int(found[1]), int(found[2])) if found else (None, None)


def _perf_stat_counts(out: str, _: Path) -> tuple[int | None, int | None]:
    found = re.search(r"([\d,]+)\s+exceptions:page_fault_user", out)
    return (int(found[1].replace(",", "")) if found else None), 0


def _perf_record_counts(_: str, scratch: Path) -> tuple[int | None, int | None]:
    report = (
        subprocess.run(
            ["perf", "report", "-i", str(scratch / "perf.data"), "--stdio", "--header-only"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        + subprocess.run(
            ["perf", "report", "-i", str(scratch / "perf.data"), "--stdio", "-q", "--sort", "pid"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
    )
    samples = subprocess.run(
        ["perf", "script", "-i", str(scratch / "perf.data"), "-F", "ip"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.count("\n")
    lost = re.search(r"Total Lost Samples: (\d+)", report)
    return samples, int(lost[1]) if lost else 0


READY = "... Ctrl-C to end."  # gmemtrace's line once everything is attached


def configurations() -> list[Config]:
    tp = "exceptions:page_fault_user"
    configs = [
        Config("untraced", None),
        Config(
            "gmemtrace live (view)",
            lambda pid, d: [*GMEMTRACE, "--pid", str(pid), "--json", "-i", "1"],
            bpf_programs=0,
            ready_text=READY,
            count=_gmemtrace_live_counts,
        ),
        Config(
            "gmemtrace live (Textual)",
            lambda pid, d: [
                "script",
                "-qfec",
                # A 160x50 terminal: the app draws what it would on a screen.
                f"stty cols 160 rows 50; TERM=xterm-256color "
                f"{shlex.join([*GMEMTRACE, '--pid', str(pid), '-i', '1'])}",
                "/dev/null",
            ],
            bpf_programs=0,
            ready_text=READY,
        ),
        Config(
            "gmemtrace exporter",
            lambda pid, d: [*GMEMTRACE, "exporter", "--pid", str(pid), "--listen", "127.0.0.1:0"],
            stops_itself=False,
            bpf_programs=0,
            ready_text=READY,
            count=_exporter_counts,
            before_stop=_scrape_exporter,
        ),
        Config(
            "gmemtrace record",
            lambda pid, d: [*GMEMTRACE, "record", "--pid", str(pid), "-o", str(d / "bench.trace")],
            bpf_programs=0,
            ready_text=READY,
            count=_gmemtrace_record_counts,
        ),
        Config(
            "bpftrace count",
            lambda pid, d: [
                "bpftrace",
                "-e",
                f"tracepoint:{tp.replace(':', ':')} /pid == {pid}/ {{ @faults = count(); }}",
            ],
            stops_itself=False,
            count=_bpftrace_counts,
        ),
        Config(
            "bcc per-event callback",
            lambda pid, d: [PY, "-m", "benchmarks.naive", str(pid)],
            stops_itself=False,
            count=_naive_counts,
        ),
        Config(
            "perf stat",
            lambda pid, d: ["perf", "stat", "-e", tp, "-p", str(pid)],
            stops_itself=False,
            bpf_programs=0,
            count=_perf_stat_counts,
        ),
        Config(
            "perf record",
            lambda pid, d: [
                "perf",
                "record",
                "-q",
                "-e",
                tp,
                "-p",
                str(pid),
                "-o",
                str(d / "perf.data"),
            ],
            stops_itself=False,
            bpf_programs=0,
            count=_perf_record_counts,
        ),
    ]
    for config in configs:
        tool = config.command(1, Path("/"))[0] if config.command else None
        if tool and tool != PY and shutil.which(tool) is None:
            config.absent = f"{tool} is not installed (apt-get install {tool})"
    return configs


PATTERNS = ("sequential", "random")


def measure(config: Config, pages: int, rounds: int, pattern: str = "sequential") -> Run:
    """One fault-storm, its pages touched in `pattern` order, under `config`'s tracer."""
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        truth = scratch / "truth.json"
        workload = subprocess.Popen(
            [
                *GMEMTRACE,
                "workload",
                "fault-storm",
                "--pages",
                str(pages),
                "--rounds",
                str(rounds),
                "--pattern",
                pattern,
                "--wait-signal",
                "--quiet",
                "-o",
                str(truth),
            ],
        )
        deadline = time.monotonic() + 30
        while not gmem_mappings(workload.pid):
            if time.monotonic() > deadline or workload.poll() is not None:
                raise RuntimeError("the workload never mapped its guest_memfd")
            time.sleep(0.01)
        tracer = None
        out_path = scratch / "tracer.out"
        if config.command:
            before = _bpf_program_count()
            with out_path.open("w") as out:
                tracer = subprocess.Popen(
                    config.command(workload.pid, scratch), stdout=out, stderr=subprocess.STDOUT
                )
            deadline = time.monotonic() + 60

            def attached() -> bool:
                if config.ready_text:
                    return config.ready_text in out_path.read_text()
                return _bpf_program_count() - before >= config.bpf_programs

            while not attached():
                if time.monotonic() > deadline or tracer.poll() is not None:
                    raise RuntimeError(f"{config.name} did not attach: {out_path.read_text()}")
                time.sleep(0.05)
            # perf shows no program and says nothing: give it a second
            time.sleep(1.0 if not (config.bpf_programs or config.ready_text) else 0.1)
        os.kill(workload.pid, signal.SIGUSR1)
        workload.wait(timeout=300)
        cpu = rss = steady = None
        events = lost = None
        if tracer is not None:
            config.before_stop(out_path.read_text(), scratch)
            steady = None if config.command(1, Path("/"))[0] == "script" else rss_mb(tracer.pid)
            if not config.stops_itself:
                time.sleep(0.2)
                # os.kill, not Popen.send_signal: that polls, and may reap the tracer
                # before wait4() can read its resource usage.
                with contextlib.suppress(ProcessLookupError):
                    os.kill(tracer.pid, signal.SIGINT)
            _, status, usage = os.wait4(tracer.pid, 0)
            tracer.returncode = os.waitstatus_to_exitcode(status)
            cpu = usage.ru_utime + usage.ru_stime
            rss = usage.ru_maxrss / 1024
            events, lost = config.count(out_path.read_text(), scratch)
        rate = json.loads(truth.read_text())["facts"]["host_faults_per_s"]
        return Run(float(rate), events, lost, cpu, rss, steady if tracer is not None else None)


def _fmt(values: list[float | None], spec: str) -> str:
    real = [v for v in values if v is not None]
    return format(statistics.median(real), spec) if real else "-"


def paired_ratios(config: Config, untraced: Config, pattern: str) -> list[float]:
    """Each repetition's rate over the untraced rate of the same repetition and order: the
    machine's drift between repetitions cancels out."""
    pairs = zip(config.runs.get(pattern, []), untraced.runs.get(pattern, []), strict=False)
    return [r.faults_per_s / u.faults_per_s for r, u in pairs]


def table(configs: list[Config], machine: str, pattern: str) -> Table:
    out = Table(
        title=f"fault-storm ({pattern} order) under each tracer on {machine} (medians; "
        "ratio: to the untraced "
        "run of the same repetition; CPU s, RSS MB: the tracer process, peak with the children "
        "it waited for (the loader); steady RSS MB: its own at the end of the storm)",
        title_justify="left",
    )
    columns = (
        "configuration",
        "faults/s",
        "range",
        "ratio",
        "ratio range",
        "events",
        "lost",
        "CPU s",
        "RSS MB",
        "steady RSS MB",
    )
    for column in columns:
        out.add_column(column, justify="left" if column == "configuration" else "right")
    for c in configs:
        if c.absent:
            out.add_row(c.name, *["-"] * (len(columns) - 2), f"absent: {c.absent}")
            continue
        runs = c.runs[pattern]
        rates = [r.faults_per_s for r in runs]
        ratios = paired_ratios(c, configs[0], pattern)
        out.add_row(
            c.name,
            f"{statistics.median(rates):,.0f}",
            f"{min(rates):,.0f} .. {max(rates):,.0f}",
            f"{statistics.median(ratios):.3f}",
            f"{min(ratios):.2f} .. {max(ratios):.2f}",
            _fmt([r.events for r in runs], ",.0f"),
            _fmt([r.lost for r in runs], ",.0f"),
            _fmt([r.cpu_s for r in runs], ".2f"),
            _fmt([r.rss_mb for r in runs], ".0f"),
            _fmt([r.steady_rss_mb for r in runs], ".0f"),
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--pages", type=int, default=16384, help="pages per round (64 MiB)")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=7, help="repetitions per configuration")
    parser.add_argument(
        "--pattern", choices=PATTERNS, action="append", help="storm orders (default both)"
    )
    parser.add_argument("--decoder-events", type=int, default=4_000_000)
    parser.add_argument("--only", nargs="*", help="configurations to run (default all)")
    parser.add_argument("--quick", action="store_true", help="small scale cases (for tests)")
    parser.add_argument("-o", "--output", type=Path, default=Path("bench-results.json"))
    args = parser.parse_args(argv)

    machine = f"{platform.node()} ({platform.release()}, {os.cpu_count()} CPUs)"
    console = Console(width=160)
    configs = [
        c for c in configurations() if c.name == "untraced" or not args.only or c.name in args.only
    ]
    patterns = args.pattern or list(PATTERNS)
    for rep in range(args.repeat):
        for pattern in patterns:
            for config in configs:
                if not config.absent:
                    run = measure(config, args.pages, args.rounds, pattern)
                    config.runs.setdefault(pattern, []).append(run)
        console.print(f"repetition {rep + 1}/{args.repeat} done", style="dim")
    for pattern in patterns:
        console.print(table(configs, machine, pattern))

    decoded = decoder.measure(args.decoder_events)
    console.print(decoder.table(decoded))
    scaled = scale.measure(args.quick)
    console.print(scale.table(scaled))
    profiled = profile.measure(args.pages, args.rounds)
    console.print(profile.table(profiled))
    attachments = attach.measure(args.pages, args.rounds, args.repeat)
    console.print(attach.table(attachments))

    doc: dict[str, Any] = {
        "machine": machine,
        "workload": f"fault-storm {args.pages} pages x {args.rounds} rounds",
        "patterns": patterns,
        "configurations": [
            {
                "name": c.name,
                "absent": c.absent,
                "runs": {p: [r.__dict__ for r in runs] for p, runs in c.runs.items()},
                "paired_ratios": {p: paired_ratios(c, configs[0], p) for p in c.runs},
            }
            for c in configs
        ],
        "decoder": decoded,
        "scale": scaled,
        "bpf_profile": profiled,
        "attachments": attachments,
    }
    args.output.write_text(json.dumps(doc, indent=2) + "\n")
    console.print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
