"""Dashboards query only metrics the workers export; deploy files agree with the settings."""

import json
import re
from pathlib import Path

import yaml

from stream.settings import Settings
from stream.worker.metrics import Metrics

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"


def exported_metric_names() -> set[str]:
    m = Metrics()
    m.watch_state(lambda: [], lambda: {})
    names = {"up"}
    for family in m.registry.collect():
        if family.type == "counter":
            names.add(family.name + "_total")
        elif family.type == "histogram":
            names.update(family.name + s for s in ("_bucket", "_sum", "_count"))
        else:
            names.add(family.name)
    return names


def _exprs(dashboard: dict) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_dashboard_queries_name_exported_metrics():
    exported = exported_metric_names()
    for path in sorted((DEPLOY / "grafana" / "dashboards").glob("*.json")):
        exprs = _exprs(json.loads(path.read_text()))
        assert exprs, path
        for expr in exprs:
            used = set(re.findall(r"\b(ecm_[a-z0-9_]+|up)\b", expr))
            assert used, (path.name, expr)
            assert used <= exported, (path.name, used - exported)


def test_alert_rules_name_exported_metrics():
    exported = exported_metric_names()
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            used = set(re.findall(r"\b(ecm_[a-z0-9_]+|up)\b", rule["expr"]))
            assert used and used <= exported, (rule["alert"], used - exported)


def test_duty_desk_has_a_p1_panel_that_turns_red():
    d = json.loads((DEPLOY / "grafana" / "dashboards" / "duty-desk.json").read_text())
    p1 = next(p for p in d["panels"] if "P1" in p["title"])
    steps = p1["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert steps[-1] == {"color": "red", "value": 1}


def test_compose_ports_and_images_agree_with_settings():
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"kafka", "worker-1", "worker-2", "prometheus", "grafana"} <= set(services)
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    scrape = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = scrape["scrape_configs"][0]["static_configs"][0]["targets"]
    for name in ("worker-1", "worker-2"):
        env = services[name]["environment"]
        port = Settings.from_env({f"ECM_{k[4:]}": str(v) for k, v in env.items()}).web_port
        assert any(p.endswith(f":{port}") for p in services[name]["ports"])
        assert f"{name}:{port}" in targets
        assert services[name]["image"] == "ecm:latest"
        assert env["ECM_BROKER"] == "kafka:9092"


def test_k8s_probes_and_ports_agree_with_settings_and_app():
    docs = list(yaml.safe_load_all((DEPLOY / "k8s" / "worker.yaml").read_text()))
    config = yaml.safe_load((DEPLOY / "k8s" / "configmap.yaml").read_text())["data"]
    settings = Settings.from_env(config)
    sts = next(d for d in docs if d["kind"] == "StatefulSet")
    container = sts["spec"]["template"]["spec"]["containers"][0]
    assert container["ports"][0]["containerPort"] == settings.web_port
    assert settings.web_host == "0.0.0.0"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    annotations = sts["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(settings.web_port)
    app_source = (Path(__file__).resolve().parents[3] / "stream" / "worker" / "web.py").read_text()
    for path in ("/readyz", "/healthz", "/metrics"):
        assert f'app.page("{path}")' in app_source
