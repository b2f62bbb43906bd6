"""The lab's suite: gmemtrace on a second kernel, booted by lab/run (`make lab` runs it on each).

Inside the guest, the function tier loads (kprobes on the kvm module's guest_memfd
functions) and, on debian-6.12-sw, the software-protected VM type converts memory
for real. Every recording is compared with the workload's ground truth, through the
function tier and through the tracepoint tier alike.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.kernel.test_trace_kernel import assert_matches_truth
from tests.tracing import (
    READY,
    Bpftrace,
    Owned,
    events_of,
    everything_loaded,
    loaded_since,
    owned_bpf,
    still_loaded,
)

KERNEL = os.environ.get("GMEMTRACE_LAB_KERNEL", "")
if not KERNEL.startswith("debian-6.12"):
    pytest.skip("runs inside the Debian 6.12 lab kernels: make lab", allow_module_level=True)
SW_PROTECTED = KERNEL.endswith("-sw")
GMEMTRACE = [sys.executable, "-m", "gmemtrace"]
FUNCTION_EVENTS = {"create", "bind", "guest_fault", "punch", "release"}


def gmemtrace(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*GMEMTRACE, *args], capture_output=True, text=True, check=False, timeout=timeout
    )


def record(
    tmp_path: Path, tier: str | None, scenario: str, *workload_args: str
) -> tuple[dict[str, Any], dict[str, Any], Path]:
    """`gmemtrace record [--tier] -- gmemtrace workload SCENARIO`: (report, truth, trace)."""
    name = tier or "default"
    trace, truth = tmp_path / f"{name}.trace", tmp_path / f"{name}.truth.json"
    forced = ["--tier", tier] if tier else []
    result = gmemtrace(
        "record", *forced, "-o", str(trace), "--json", "--",
        *GMEMTRACE, "workload", scenario, "-q", "-o", str(truth), *workload_args,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout[result.stdout.rindex('{\n  "trace"') :])
    return report, json.loads(truth.read_text()), trace


def test_doctor_tells_this_kernels_vm_types_attributes_and_tiers() -> None:
    result = gmemtrace("doctor", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    facts = doc["facts"]
    assert facts["kernel"].startswith("6.12")
    by_type = facts["kvm_caps_by_vm_type"]
    if SW_PROTECTED:
        assert facts["vm_types"] == ["KVM_X86_DEFAULT_VM", "KVM_X86_SW_PROTECTED_VM"]
        protected = by_type["KVM_X86_SW_PROTECTED_VM"]
        assert protected["KVM_CAP_GUEST_MEMFD"] == 1
        assert protected["KVM_CAP_MEMORY_ATTRIBUTES"] == 1 << 3  # PRIVATE
        assert facts["kvm_caps"] == protected
    else:
        assert facts["vm_types"] == ["KVM_X86_DEFAULT_VM"]
        assert by_type["KVM_X86_DEFAULT_VM"]["KVM_CAP_MEMORY_ATTRIBUTES"] == 0
    assert facts["program_types"]["kprobe"] is True
    assert "kvm_gmem_get_pfn" in facts["gmem_functions"]["btf"]  # the kvm module's BTF
    assert set(facts["probe_tiers"]["kprobe"]) == FUNCTION_EVENTS


def test_probes_take_the_function_tier_and_say_why_not_fentry() -> None:
    result = gmemtrace("probes", "--json")
    assert result.returncode == 0, result.stderr
    plan = {c["event"]: c for c in json.loads(result.stdout)}
    for event in FUNCTION_EVENTS:
        assert plan[event]["tier"] == "kprobe", plan[event]
    assert plan["guest_fault"]["attach"] == "kprobe:kvm_gmem_get_pfn"
    assert plan["bind"]["attach"] == "kprobe:kvm_gmem_commit_memory_region"  # Debian's 6.12
    fentry = dict(plan["guest_fault"]["rejected"])["fentry"]
    assert "kvm_gmem_get_pfn is in kvm" in fentry
    assert plan["host_fault"]["tier"] == "tracepoint"
    forced = gmemtrace("probes", "--json", "--tier", "tracepoint")
    tiers = {c["event"]: c["tier"] for c in json.loads(forced.stdout)}
    assert tiers["guest_fault"] == "tracepoint" and tiers["release"] is None


@pytest.mark.parametrize("tier", [None, "tracepoint"], ids=["function", "tracepoint"])
def test_fallocate_and_punch_equal_the_ground_truth(tmp_path: Path, tier: str | None) -> None:
    """guest_memfd without mmap or memslots, as every kernel with it has it."""
    before = everything_loaded()  # the guest is this test's own: nothing else loads BPF
    report, truth, trace = record(tmp_path, tier, "fallocate")
    assert_matches_truth(report, truth, trace)
    assert loaded_since(before) == Owned(), "every probe (kprobes too) detached at the end"
    if tier is None:
        assert report["probes"]["punch"] == "kprobe: kprobe:kvm_gmem_fallocate"
        released = events_of(trace, "release")
        assert [(e["ino"], e["count"]) for e in released] == [
            (i["ino"], i["size_pages"]) for i in truth["inodes"]
        ]


def test_coco_needs_the_software_protected_type_and_says_so() -> None:
    result = gmemtrace("workload", "coco")
    if SW_PROTECTED:
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode == 1
        assert "offers no KVM_X86_SW_PROTECTED_VM" in result.stderr
        assert "Traceback" not in result.stderr


# What only the software-protected VM type can show: defined on debian-6.12-sw only.
if SW_PROTECTED:

    def test_coco_through_both_tiers_equals_the_ground_truth(tmp_path: Path) -> None:
        by_tier = {}
        for tier in (None, "tracepoint"):
            report, truth, trace = record(tmp_path, tier, "coco")
            assert_matches_truth(report, truth, trace)
            (inode,) = truth["inodes"]
            assert inode["counts"]["guest_faults"] > inode["counts"]["pages_allocated"] > 0, (
                "faults that find their page allocated: seen only where every fault is"
            )
            exits = [{k: e[k] for k in ("gpa", "size", "private", "ino", "page")} for e in
                     report["memory_fault_exits"]["exits"]]  # fmt: skip
            assert exits == truth["facts"]["memory_fault_exits"]
            assert report["memory_fault_exits"]["count"] == 2
            conversions = [
                c for c in report["conversions"] if c["interface"] == "KVM_SET_MEMORY_ATTRIBUTES"
            ]
            assert all(c["result"] == 0 and c["latency_ns"] > 0 for c in conversions)
            by_tier[tier] = report
        function, tracepoint = by_tier[None], by_tier["tracepoint"]
        assert function["probes"]["guest_fault"] == "kprobe: kprobe:kvm_gmem_get_pfn"
        assert tracepoint["probes"]["guest_fault"].startswith("tracepoint: kvm:kvm_page_fault")
        strip = ("ino", "generation")
        assert [{k: v for k, v in i.items() if k not in strip} for i in function["inodes"]] == [
            {k: v for k, v in i.items() if k not in strip} for i in tracepoint["inodes"]
        ]

    def test_guest_faults_equal_what_bpftrace_counts_in_the_same_run(tmp_path: Path) -> None:
        """Any command under `gmemtrace record`: its guest faults are the kvm_gmem_get_pfn calls."""
        # BEGIN runs once every probe is attached: its line is the fact to wait for.
        script = 'BEGIN { printf("attached\\n"); } kprobe:kvm_gmem_get_pfn { @calls = count(); }'
        with Bpftrace(script) as counter:
            script = "gmemtrace workload coco -q --rounds 3 && gmemtrace workload coco -q"
            trace = tmp_path / "any.trace"
            result = gmemtrace(
                "record", "-o", str(trace), "--json", "--", "sh", "-c",
                script.replace("gmemtrace", " ".join(GMEMTRACE)),
            )  # fmt: skip
            assert result.returncode == 0, result.stderr[-3000:]
        output = counter.output
        calls = int(output.split("@calls:")[1].split()[0])
        report = json.loads(result.stdout[result.stdout.rindex('{\n  "trace"') :])
        guest_faults = sum(i["guest_faults"] for i in report["inodes"])
        assert guest_faults == calls > 0


def test_the_exporter_serves_what_the_function_tier_sees(tmp_path: Path) -> None:
    """`gmemtrace exporter` on this kernel: its kprobes (loaded by the loader child and
    handed over) count what the workload did; the scrape equals the ground truth."""
    import re
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    exporter = subprocess.Popen(
        [*GMEMTRACE, "exporter", "--listen", "127.0.0.1:0", "--keep-released", "600"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert exporter.stderr is not None
        ready = exporter.stderr.readline()
        url = re.search(r"(http://\S+/metrics)", ready)
        assert url and READY in ready, ready
        owned = owned_bpf(exporter.pid)
        scenario = "coco" if SW_PROTECTED else "fallocate"
        truth_file = tmp_path / "truth.json"
        done = gmemtrace("workload", scenario, "-q", "-o", str(truth_file))
        assert done.returncode == 0, done.stderr
        truth = json.loads(truth_file.read_text())

        def scraped() -> str:
            with urllib.request.urlopen(url[1], timeout=60) as response:
                return str(response.read().decode())

        # The workload's last event is each guest_memfd's release: once the scrape shows
        # them all released, everything before them has been counted.
        deadline = time.monotonic() + 600
        while True:
            scrape = scraped()
            lines = [ln for ln in scrape.splitlines() if ln.startswith("gmemtrace_released{")]
            if all(
                any(f'ino="{i["ino"]}"' in ln and ln.endswith(" 1.0") for ln in lines)
                for i in truth["inodes"]
            ):
                break
            assert time.monotonic() < deadline, "the exporter never saw the releases"
            time.sleep(0.2)
    finally:
        exporter.send_signal(signal.SIGTERM)
        assert exporter.wait(timeout=60) == 0
    assert owned.programs and still_loaded(owned) == Owned(), "its probes went with it"
    samples = [s for f in text_string_to_metric_families(scrape) for s in f.samples]

    def value(name: str, ino: int, **labels: str) -> float:
        return sum(
            s.value
            for s in samples
            if s.name == name and s.labels.get("ino") == str(ino)
            and labels.items() <= s.labels.items()
        )  # fmt: skip

    probes = {
        s.labels["event"]: s.labels["tier"] for s in samples if s.name == "gmemtrace_probe_info"
    }
    assert {e for e, t in probes.items() if t == "kprobe"} == FUNCTION_EVENTS
    for inode in truth["inodes"]:
        ino, counts = inode["ino"], inode["counts"]
        assert value("gmemtrace_guest_faults_total", ino) == counts["guest_faults"]
        assert value("gmemtrace_host_faults_total", ino) == counts["host_faults"]
        assert value("gmemtrace_pages_allocated_total", ino) == counts["pages_allocated"]
        assert value("gmemtrace_pages_freed_total", ino) == counts["pages_freed"]
        assert value("gmemtrace_hole_punches_total", ino) == counts["hole_punches"]
        assert value("gmemtrace_conversions_total", ino) == counts["conversion_attempts"]
        ok = value("gmemtrace_conversions_total", ino, direction="to_private", result="ok")
        assert ok == counts["conversions_to_private"]
        assert value("gmemtrace_released", ino) == 1, "released: the function tier saw it"
    if SW_PROTECTED:
        exits = sum(s.value for s in samples if s.name == "gmemtrace_memory_fault_exits_total")
        assert exits == len(truth["facts"]["memory_fault_exits"])
