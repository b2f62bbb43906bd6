"""`make screenshot`: the live view at 160x50 during the demo's workload, as an SVG (Textual's
own export), for the README. Needs what `make demo` needs: real KVM and BPF."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from gmemtrace.capture import Capture, StopRule, Targets
from gmemtrace.commands.demo import DEMO_WORKLOAD
from gmemtrace.view import view_of

SIZE = (160, 50)
SETTLE_S = 6.0  # into the workload: its conversions, refusals and a few rate samples done


def main(out: Path) -> int:
    real = [sys.executable, "-m", "gmemtrace", *DEMO_WORKLOAD]
    capture = Capture(
        Targets(command=real),
        stream_hot=False,
        capture_output=True,
        stop=StopRule(handle_signals=False),
    )

    async def shoot() -> None:
        view = view_of(capture)
        view.begin()
        app = view.make_app()
        async with app.run_test(size=SIZE) as pilot:
            started = time.monotonic()
            while time.monotonic() - started < SETTLE_S:
                await pilot.pause(0.25)
            app.save_screenshot(out.name, str(out.parent))

    with capture:
        asyncio.run(shoot())
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/live-view.svg")))
