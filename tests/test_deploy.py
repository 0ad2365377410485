"""deploy/: the Prometheus rules and scrape config pass promtool, and the rules and the Grafana
dashboard name only series the daemon's endpoint exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml  # PyYAML: installed with optuna, a runtime dependency
from prometheus_client.parser import text_string_to_metric_families

from ares_stream.daemon.prometheus import Metrics

ROOT = Path(__file__).resolve().parents[1]
ALERTS = ROOT / "deploy/prometheus/alerts.yml"
SCRAPE = ROOT / "deploy/prometheus/prometheus.yml"
DASHBOARD = ROOT / "deploy/grafana/ares-stream.json"
NAME = re.compile(r"\bares_[a-z_]+")
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}


def exported() -> set[str]:
    """Every series name a fresh endpoint registers: family names and their sample names."""
    names = set()
    for family in text_string_to_metric_families(Metrics().exposition().decode()):
        names.add(family.name)
        names.update(family.name + s for s in SUFFIXES.get(family.type, ()))
    return names


def rule_exprs() -> list[str]:
    rules = yaml.safe_load(ALERTS.read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def dashboard_exprs(node: Any) -> Iterator[str]:
    """Every PromQL text of the dashboard: panel targets and template variable queries."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expr", "definition") and isinstance(value, str):
                yield value
            else:
                yield from dashboard_exprs(value)
    elif isinstance(node, list):
        for item in node:
            yield from dashboard_exprs(item)


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("promtool")
    if exe is None:
        pytest.skip("promtool is not on PATH (apt-get install prometheus)")
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=60, check=False)


def test_the_alert_rules_pass_promtool() -> None:
    """`promtool check rules` accepts deploy/prometheus/alerts.yml."""
    done = promtool("check", "rules", str(ALERTS))
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_scrape_config_passes_promtool() -> None:
    """`promtool check config` accepts deploy/prometheus/prometheus.yml and the rules it loads."""
    done = promtool("check", "config", str(SCRAPE))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 rule files found" in done.stdout


def test_the_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """Each dashboard query, its variables set to match-all, parses as a recording rule."""
    exprs = [e.replace("$instance", ".*").replace("$symbol", ".*")
             for e in dashboard_exprs(dashboard()["panels"])]
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"ares_dashboard:query{i}", "expr": e} for i, e in enumerate(exprs)]}]}
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump(rules))
    done = promtool("check", "rules", str(path))
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_rules_name_only_exported_series() -> None:
    """Every ares_* series an alert rule reads is one the endpoint registers."""
    named = {m for e in rule_exprs() for m in NAME.findall(e)}
    assert named and named <= exported(), named - exported()


def test_the_dashboard_loads_and_names_only_exported_series() -> None:
    """The dashboard is JSON with panels, and every ares_* series it queries is exported."""
    dash = dashboard()
    assert dash["uid"] == "ares-stream" and dash["panels"]
    named = {m for e in dashboard_exprs(dash) for m in NAME.findall(e)}
    assert named and named <= exported(), named - exported()


def test_the_quality_series_are_alerted_on_and_shown() -> None:
    """The model-quality gauges appear in both the rules and the dashboard."""
    rules = " ".join(rule_exprs())
    shown = " ".join(dashboard_exprs(dashboard()))
    for name in ("ares_rolling_log_loss", "ares_champion_age_seconds", "ares_features_drifting",
                 "ares_healthy", "ares_checkpoint_failures"):
        assert name in rules and name in shown, name
