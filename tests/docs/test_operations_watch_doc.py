"""docs/OPERATIONS.md, "Continuous verification": the manifests and alert rules hold together.

Every YAML block of the section is parsed (PyYAML). The containers' arguments are
parsed by the real ``verify`` click command, so an option the CLI does not have, or
a bad value, fails here. Every alert expression is parsed by a PromQL parser
(``promql-parser``, the Rust ``promql-parser`` crate's Python binding), and the
metrics, label matchers and ``by`` labels it uses are read from its syntax tree.
They, and the metrics table, may name only metrics and labels the verifier really
exports: those are read from a :class:`~audit_archiver.verify.metrics.VerifyMetrics`
registry after a run.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click
import promql_parser
import pytest
import yaml  # type: ignore[import-untyped]
from prometheus_client import generate_latest

from audit_archiver._cli.verify import verify
from audit_archiver.verify.metrics import RESULTS, RunFigures, VerifyMetrics
from audit_archiver.verify.problems import KINDS
from audit_archiver.verify.watch import parse_listen
from tests.docs.snippets import extract_snippets

DOC = Path(__file__).resolve().parents[2] / "docs" / "OPERATIONS.md"
TITLE = "## Continuous verification"


def section() -> str:
    text = DOC.read_text(encoding="utf-8")
    start = text.index(TITLE + "\n")
    end = text.find("\n## ", start + len(TITLE))
    return text[start : end if end != -1 else len(text)]


def documents() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for snippet in extract_snippets(section()):
        assert snippet.lang == "yaml", f"section line {snippet.line}: {snippet.lang!r}"
        docs += [d for d in yaml.safe_load_all(snippet.text) if d is not None]
    return docs


def by_kind(kind: str) -> dict[str, Any]:
    (found,) = [d for d in documents() if d.get("kind") == kind]
    return found


def exported() -> dict[str, set[str]]:
    """Metric sample names the verifier exports after one run, with their label names."""
    metrics = VerifyMetrics(300.0)
    metrics.record_run(
        RunFigures(started=1.0, duration=2.0, ok=True, problems={}, newest_seals={"web": 3.0})
    )
    metrics.record_error(storage=True)
    names: dict[str, set[str]] = {}
    for line in generate_latest(metrics.registry).decode().splitlines():
        if line.startswith("#"):
            continue
        series = line.rpartition(" ")[0]
        name, _, labels = series.partition("{")
        if name.endswith("_created"):
            continue
        names.setdefault(name, set()).update(re.findall(r'(\w+)="', labels))
    return names


def verify_params(args: list[str]) -> dict[str, Any]:
    """The options the real ``verify`` command parses from a container's args."""
    assert args[0] == "verify"
    context: click.Context = verify.make_context("verify", list(args[1:]))
    return dict(context.params)


def mount_of(spec: dict[str, Any], path: str) -> dict[str, Any]:
    """The volume mounted at the directory holding ``path`` in the pod spec's one container."""
    (container,) = spec["containers"]
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == str(Path(path).parent)]
    volumes: list[dict[str, Any]] = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    (volume,) = volumes
    return volume


def test_section_has_the_manifests_and_rules() -> None:
    kinds = sorted(d.get("kind", "rules" if "groups" in d else "?") for d in documents())
    assert kinds == ["CronJob", "Deployment", "PersistentVolumeClaim", "rules"]


def test_deployment_runs_the_watcher_with_its_state_on_the_claim() -> None:
    deployment = by_kind("Deployment")
    claim = by_kind("PersistentVolumeClaim")["metadata"]["name"]
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    params = verify_params(container["args"])
    assert params["watch"] > 0
    assert params["as_json"]
    state = str(params["state"])
    assert mount_of(pod, state)["persistentVolumeClaim"]["claimName"] == claim
    assert "configMap" in mount_of(pod, str(params["trust"]))
    _, port = parse_listen(params["metrics_listen"])
    assert {"name": "metrics", "containerPort": port} in container["ports"]
    max_age = params["max_age"]
    assert max_age > params["watch"]


def test_cronjob_runs_one_verify_on_the_same_state() -> None:
    cronjob = by_kind("CronJob")["spec"]
    assert cronjob["concurrencyPolicy"] == "Forbid"
    pod = cronjob["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    params = verify_params(container["args"])
    assert params["watch"] is None
    assert params["metrics_listen"] is None
    claim = by_kind("PersistentVolumeClaim")["metadata"]["name"]
    assert mount_of(pod, str(params["state"]))["persistentVolumeClaim"]["claimName"] == claim
    deployment = by_kind("Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    watch_only = {"watch", "metrics_listen"}
    same = {k: v for k, v in verify_params(deployment).items() if k not in watch_only}
    assert {k: v for k, v in params.items() if k not in watch_only} == same


def _rules() -> list[dict[str, Any]]:
    (doc,) = [d for d in documents() if "groups" in d]
    return [rule for group in doc["groups"] for rule in group["rules"]]


class Uses:
    """What a PromQL expression refers to: metric names, ``label="value"`` matchers and
    ``by (...)`` labels, read from the parser's syntax tree."""

    def __init__(self, expr: str) -> None:
        self.metrics: list[str] = []
        self.matchers: list[tuple[str, str]] = []
        self.grouped: set[str] = set()
        self._walk(promql_parser.parse(expr))

    def _walk(self, node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            self.metrics.append(str(node.name))
            self.matchers += [(m.name, m.value) for m in node.matchers.matchers]
            return
        if isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            self.grouped |= set(node.modifier.labels)
        for child in ("lhs", "rhs", "expr", "param", "vector_selector"):
            found = getattr(node, child, None)
            if found is not None:
                self._walk(found)
        for argument in getattr(node, "args", None) or ():
            self._walk(argument)


def test_uses_reads_the_syntax_tree() -> None:
    uses = Uses('sum by (kind) (rate(a_total{result="x"}[5m])) / on() b > 2 * time()')
    assert (uses.metrics, uses.matchers, uses.grouped) == (
        ["a_total", "b"],
        [("result", "x")],
        {"kind"},
    )
    with pytest.raises(ValueError, match="parenthesis"):
        Uses("sum by (kind (a)")


def test_alert_rules_use_only_exported_metrics_and_labels() -> None:
    names = exported()
    for rule in _rules():
        uses = Uses(rule["expr"])  # a syntax error fails here
        assert uses.metrics, rule["alert"]
        labels: set[str] = set()
        for name in uses.metrics:
            assert name in names, f"{rule['alert']}: {name} is not exported"
            labels |= names[name]
        assert uses.grouped <= labels, rule["alert"]
        for label, value in uses.matchers:
            assert label in labels, rule["alert"]
            if label == "result":
                assert value in RESULTS
        annotations = " ".join(rule.get("annotations", {}).values())
        for label in re.findall(r"\$labels\.(\w+)", annotations):
            assert label in labels, f"{rule['alert']}: no label {label}"


def test_alert_rules_cover_stale_streams_problems_and_failing_runs() -> None:
    exprs = {rule["alert"]: rule["expr"] for rule in _rules()}
    uses = {
        metric: [alert for alert, expr in exprs.items() if metric in expr]
        for metric in (
            "audit_archiver_verify_newest_verified_seal_timestamp_seconds",
            "audit_archiver_verify_problems",
            "audit_archiver_verify_last_run_start_timestamp_seconds",
            'audit_archiver_verify_runs_total{result="error"}',
            "audit_archiver_verify_last_run_ok",
        )
    }
    assert all(uses.values()), uses


def test_metrics_table_lists_exactly_what_is_exported() -> None:
    documented = {
        match.group(1): set(filter(None, (match.group(2) or "").split(",")))
        for match in re.finditer(
            r"^\| `(audit_archiver_verify_\w+)(?:\{([\w,]+)\})?` \|", section(), re.M
        )
    }
    assert documented == exported()
    assert set(KINDS) <= set(re.findall(r'kind="(\w+)"', generate_latest(_registry()).decode()))


def _registry() -> Any:
    metrics = VerifyMetrics()
    metrics.record_run(RunFigures(started=1.0, duration=2.0, ok=True, problems={}))
    return metrics.registry


def test_error_runs_alert_says_what_it_counts() -> None:
    """``runs_total{result="error"}`` counts runs ended by a storage error *or* a later
    configuration error (see :meth:`~audit_archiver.verify.metrics.VerifyMetrics.record_error`),
    and ``increase()`` extrapolates: the alert text must not call it "storage errors"
    nor present ``$value`` as an exact count."""
    (rule,) = [r for r in _rules() if ("result", "error") in Uses(r["expr"]).matchers]
    text = " ".join(rule["annotations"].values())
    assert "storage error" in text
    assert "configuration error" in text
    assert "about {{ $value | humanize }}" in rule["annotations"]["summary"]
