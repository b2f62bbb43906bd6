"""`gmemtrace explain` for people: each refusal or exit, then the page, then its cause.

#1 refused write at +0.004512 s: python3[4242] tid 4242, address 0x7f0c2a40a000
   guest_memfd 5123 page 10: private
   since +0.003101 s: converted to private by python3[4242] tid 4242,
   KVM_SET_MEMORY_ATTRIBUTES2, pages 8+4, ok in 12.3us
"""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.text import Text

from gmemtrace.kernel.uapi import decode_gmem_flags
from gmemtrace.sinks.palette import ERROR_STYLE, OK_STYLE

WHAT = {
    "refused": "refused",
    "beyond_eof": "refused past the end of the file:",
    "memory_fault_exit": "memory fault exit",
}


def _who(pid: int | None, comm: str, tid: int | None) -> str:
    if pid is None:
        return "a process not traced"
    return f"{comm or '?'}[{pid}] tid {tid}"


def _us(ns: int) -> str:
    return f"{ns / 1000:.1f}us"


def _cause_line(cause: dict[str, Any] | None, lead: str) -> Text:
    if cause is None:
        return Text(f"   {lead}: nothing the trace saw (it began after, or a fault inferred it)",
                    style="dim")  # fmt: skip
    who = _who(cause["pid"], cause["comm"], cause["tid"])
    at = f"   {lead} {cause['t_s']:+.6f} s: "
    if cause["what"] == "creation":
        flags = "|".join(decode_gmem_flags(cause["flags"] or 0)) or "no flags"
        size = f" with {cause['size_pages']} pages" if "size_pages" in cause else ""
        return Text(f"{at}created{size} ({flags}) by {who}")
    text = Text(f"{at}converted to {cause['to']} by {who}, {cause['interface']}, ")
    if cause["ino"] is None:  # by guest frame (KVM_SET_MEMORY_ATTRIBUTES outside guest_memfd)
        text.append(f"frames {cause['first']:#x}+{cause['count']}, ")
    else:
        text.append(f"guest_memfd {cause['ino']} pages {cause['first']}+{cause['count']}, ")
    text.append(cause["result"], style=OK_STYLE if cause["result"] == "ok" else ERROR_STYLE)
    text.append(f" in {_us(cause['latency_ns'])}")
    return text


def explanation(item: dict[str, Any]) -> RenderableType:
    who = item["who"]
    head = Text(f"#{item['n']} ", style="bold")
    what = WHAT[item["what"]]
    if who["access"] and item["what"] != "memory_fault_exit":
        what = f"{what} {who['access']}"
    head.append(what, style=ERROR_STYLE)
    head.append(f" at {item['t_s']:+.6f} s: {_who(who['pid'], who['comm'], who['tid'])}")
    if item["what"] == "memory_fault_exit":
        head.append(f", the guest wanted gpa {who['gpa']:#x} ({who['size']} bytes) {who['wants']}")
    else:
        head.append(f", address {who['address']:#x}")
    lines: list[RenderableType] = [head]
    page = item["page"]
    if page["ino"] is None:
        lines.append(
            Text(f"   frame {page['gfn']:#x}: {page['state']} by the VM's memory attributes, "
                 "in no guest_memfd (no memslot binding seen covers it)")
        )  # fmt: skip
    else:
        lines.append(Text(f"   guest_memfd {page['ino']} page {page['page']}: {page['state']}"))
    lines.append(_cause_line(item["cause"], "since"))
    if item["what"] == "memory_fault_exit":
        answer = item["answer"]
        if answer is None:
            lines.append(Text("   not answered by a conversion in the trace", style=ERROR_STYLE))
        else:
            lines.append(_cause_line(answer, "answered"))
            lines.append(Text(f"   the vCPU waited {_us(answer['waited_ns'])} for it"))
    return Group(*lines)


def to_text(items: list[dict[str, Any]]) -> RenderableType:
    if not items:
        return Text("no refused fault and no memory fault exit in this trace")
    return Group(*(explanation(item) for item in items))
