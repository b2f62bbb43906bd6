"""contrib/: the systemd unit is one systemd accepts, and starts the exporter with arguments
gmemtrace accepts; the Grafana dashboard is well formed (its metric names are checked
against a real scrape in tests/kernel/test_exporter_kernel.py)."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gmemtrace import cli
from gmemtrace.sinks.metrics import METRICS

CONTRIB = Path(__file__).parents[2] / "contrib"
UNIT = CONTRIB / "gmemtrace-exporter.service"


def exec_start() -> list[str]:
    line = next(x for x in UNIT.read_text().splitlines() if x.startswith("ExecStart="))
    return shlex.split(line.removeprefix("ExecStart="))


def test_the_unit_starts_the_exporter_with_arguments_it_accepts() -> None:
    argv = exec_start()
    assert argv[0].endswith("/bin/gmemtrace") and argv[1] == "exporter"
    args = cli.build_parser().parse_args(argv[1:])
    assert args.listen.startswith("127.0.0.1:"), "loopback unless asked"


def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (package systemd)")
    binary = Path(sys.executable).parent / "gmemtrace"
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace(exec_start()[0], str(binary)))
    result = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr


def test_the_dashboard_is_grafana_json_over_the_served_metrics() -> None:
    dashboard = json.loads((CONTRIB / "grafana-dashboard.json").read_text())
    assert dashboard["uid"] and dashboard["title"] and dashboard["panels"]
    served = {m.name for m in METRICS}
    used = set()
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}"
        for target in panel["targets"]:
            names = re.findall(r"\bgmemtrace_[a-z_]+", target["expr"])
            used |= {name.removesuffix("_bucket") for name in names}
    assert used and used <= served


def _readme_blocks(language: str) -> list[str]:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    fleet = readme[readme.index("## Fleet") : readme.index("## Kernels")]
    return re.findall(rf"```{language}\n(.*?)```", fleet, re.DOTALL)


def _promtool() -> str:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed (make test installs Debian's prometheus)")
    return promtool


def test_the_readme_promql_is_promql(tmp_path: Path) -> None:
    """Every query of the README's Fleet section, checked by Prometheus's own promtool."""
    (block,) = _readme_blocks("promql")
    queries = [q for q in block.splitlines() if q.strip() and not q.startswith("#")]
    assert len(queries) >= 6
    rules = tmp_path / "rules.yml"
    rules.write_text(
        "groups:\n- name: readme\n  rules:\n"
        + "".join(
            f"  - record: readme:q{i}\n    expr: {json.dumps(q)}\n" for i, q in enumerate(queries)
        )
    )
    result = subprocess.run(
        [_promtool(), "check", "rules", str(rules)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(queries)} rules found" in result.stdout


def test_the_readme_scrape_config_and_alert_are_valid(tmp_path: Path) -> None:
    (block,) = _readme_blocks("yaml")
    config, rules = block.split("# rules file:\n")
    (tmp_path / "prometheus.yml").write_text(config)
    (tmp_path / "rules.yml").write_text(rules)
    for kind, name in (("config", "prometheus.yml"), ("rules", "rules.yml")):
        result = subprocess.run(
            [_promtool(), "check", kind, str(tmp_path / name)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
