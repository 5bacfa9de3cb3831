#!/usr/bin/env python3
"""Checks of the deploy kit that need a parser rather than a shell (used by deploy/check-kit.sh).

    kit_checks.py kubernetes DIR RENDERED.yaml   semantic checks of the manifests (probes, drain, selectors)
    kit_checks.py k8s-config DIR OUTDIR          write the ConfigMap's proxy.conf and the Secret's userlist
                                                 to OUTDIR, auth_file pointed at OUTDIR (for check-config)
    kit_checks.py systemd UNIT SHUTDOWN_TIMEOUT  TimeoutStopSec and the other unit keys the drain needs
    kit_checks.py dashboard JSON                 structure of the Grafana dashboard
    kit_checks.py exprs RULES JSON               every PromQL expression (dashboard, then rules), one a line
    kit_checks.py selectors RULES JSON           every metric selector (name{matchers}) they use, one a line
    kit_checks.py metric-names RULES JSON        every metric name they use, one a line
    kit_checks.py containerfile-packages FILE    the RUNTIME_PACKAGES list of the Containerfile
    kit_checks.py prometheus-config IN OUT TARGET RULES   the kit's prometheus.yml for a short test run

Exit status 1 with a message on stderr when a check fails.
"""
import json
import re
import sys

import yaml


def fail(message):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


# --- Kubernetes -------------------------------------------------------------

def parse_proxy_conf(text):
    """Minimal reading of proxy.conf: {section: {key: value}} (comments stripped)."""
    sections, current = {}, None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in ";#":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1].strip().lower(), {})
            continue
        key, _, value = line.partition("=")
        value = re.split(r"\s[;#]", value, maxsplit=1)[0].strip()
        if current is not None:
            current[key.strip().lower()] = value
    return sections


def duration(value, default):
    return float(value) if value not in (None, "") else float(default)


def load_docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def check_kubernetes(directory, rendered):
    docs = load_docs(rendered)
    by_kind = {}
    for d in docs:
        for key in ("apiVersion", "kind", "metadata"):
            if key not in d:
                fail(f"a manifest has no {key}: {d}")
        by_kind.setdefault(d["kind"], []).append(d)
    for kind in ("Deployment", "Service", "PodDisruptionBudget", "ConfigMap", "Secret"):
        if len(by_kind.get(kind, [])) != 1:
            fail(f"expected exactly one {kind}, found {len(by_kind.get(kind, []))}")
    deployment, service = by_kind["Deployment"][0], by_kind["Service"][0]
    pdb, configmap, secret = by_kind["PodDisruptionBudget"][0], by_kind["ConfigMap"][0], by_kind["Secret"][0]

    spec = deployment["spec"]
    if spec.get("replicas") != 2:
        fail(f"Deployment replicas is {spec.get('replicas')}, the kit runs 2")
    rolling = spec.get("strategy", {}).get("rollingUpdate", {})
    if str(rolling.get("maxUnavailable")) != "0":
        fail("rollingUpdate.maxUnavailable must be 0: an old pod may stop only once its successor is ready")
    pod = spec["template"]
    pod_labels = pod["metadata"].get("labels", {})
    selector = spec["selector"]["matchLabels"]
    if any(pod_labels.get(k) != v for k, v in selector.items()):
        fail("the Deployment's selector does not match its pod labels")
    for name, sel in (("Service", service["spec"]["selector"]), ("PodDisruptionBudget", pdb["spec"]["selector"]["matchLabels"])):
        if not sel or any(pod_labels.get(k) != v for k, v in sel.items()):
            fail(f"the {name} selector {sel} does not select the Deployment's pods {pod_labels}")
    if "minAvailable" not in pdb["spec"] and "maxUnavailable" not in pdb["spec"]:
        fail("the PodDisruptionBudget sets neither minAvailable nor maxUnavailable")
    if pdb["spec"].get("minAvailable") is not None and int(pdb["spec"]["minAvailable"]) >= spec["replicas"]:
        fail("PodDisruptionBudget minAvailable >= replicas: no pod could ever be evicted")

    containers = pod["spec"]["containers"]
    if len(containers) != 1:
        fail("expected one container in the pod")
    c = containers[0]
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    if "postgres" not in ports or "metrics" not in ports:
        fail(f"container ports must be named postgres and metrics, got {ports}")

    # The proxy.conf in the ConfigMap must agree with the pod.
    conf_text = configmap["data"].get("proxy.conf")
    if not conf_text:
        fail("the ConfigMap has no proxy.conf key")
    conf = parse_proxy_conf(conf_text).get("switchyard", {})
    if int(conf.get("listen_port", 6432)) != ports["postgres"]:
        fail(f"listen_port {conf.get('listen_port')} != containerPort postgres {ports['postgres']}")
    if int(conf.get("metrics_port", 0)) != ports["metrics"]:
        fail(f"metrics_port {conf.get('metrics_port')} != containerPort metrics {ports['metrics']}")
    for key in ("listen_addr", "metrics_addr"):
        if conf.get(key) not in ("0.0.0.0", "::"):
            fail(f"{key} = {conf.get(key)}: the Service and the kubelet probes cannot reach a loopback listener")

    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        get = c.get(probe, {}).get("httpGet")
        if not get or get.get("path") != path or get.get("port") not in ("metrics", ports["metrics"]):
            fail(f"{probe} must be an httpGet of {path} on the metrics port, got {c.get(probe)}")
    annotations = pod["metadata"].get("annotations", {})
    if annotations.get("prometheus.io/scrape") != "true" or annotations.get("prometheus.io/port") != str(ports["metrics"]):
        fail(f"pod scrape annotations missing or not on the metrics port: {annotations}")

    # The drain: preStop sleep, then SIGTERM, then up to shutdown_timeout (+2 s probe grace).
    command = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command")
    sleep = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds")
    if command:
        numbers = [float(x) for x in command if re.fullmatch(r"\d+(\.\d+)?", str(x))]
        if not any("sleep" in str(x) for x in command) or not numbers:
            fail(f"preStop must sleep so the Service drops the pod before SIGTERM, got {command}")
        sleep = numbers[0]
    if not sleep or float(sleep) < 5:
        fail("preStop must sleep at least 5 s")
    shutdown = duration(conf.get("shutdown_timeout"), 30)
    grace = pod["spec"].get("terminationGracePeriodSeconds", 30)
    if grace <= float(sleep) + shutdown + 2:
        fail(f"terminationGracePeriodSeconds {grace} must exceed preStop {sleep} + shutdown_timeout {shutdown} + 2")

    # Config file and userlist: the paths the pod uses exist in the volumes.
    args = c.get("args", []) + c.get("command", [])
    if "--config" not in args:
        fail("the container args do not pass --config")
    config_path = args[args.index("--config") + 1]
    mounts = {m["name"]: m for m in c.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in pod["spec"].get("volumes", [])}

    def file_in(volume_kind, ref_name, key, path):
        for name, vol in volumes.items():
            src = vol.get(volume_kind)
            if not src or src.get("name", src.get("secretName")) != ref_name or name not in mounts:
                continue
            m = mounts[name]
            target = m["mountPath"] if m.get("subPath") == key else f"{m['mountPath'].rstrip('/')}/{key}"
            if m.get("subPath") and m["subPath"] != key:
                continue
            if target == path:
                return m
        return None

    m = file_in("configMap", configmap["metadata"]["name"], "proxy.conf", config_path)
    if not m:
        fail(f"--config {config_path} is not the ConfigMap's proxy.conf as mounted")
    if m.get("subPath"):
        fail("the ConfigMap is mounted with subPath: edits would never reach the file")
    auth_file = conf.get("auth_file")
    secret_keys = set(secret.get("stringData", {})) | set(secret.get("data", {}))
    if not auth_file or not any(file_in("secret", secret["metadata"]["name"], k, auth_file) for k in secret_keys):
        fail(f"auth_file {auth_file} is not a key of the Secret {secret['metadata']['name']} as mounted")
    if "password" in conf_text.lower() and "[users]" in conf_text.lower():
        fail("the ConfigMap holds passwords; they belong in the Secret")

    resources = c.get("resources", {}).get("requests", {})
    if "cpu" not in resources or "memory" not in resources:
        fail("the container must request cpu and memory")
    sc = c.get("securityContext", {})
    psc = pod["spec"].get("securityContext", {})
    if not (psc.get("runAsNonRoot") or sc.get("runAsNonRoot")) or sc.get("allowPrivilegeEscalation") is not False:
        fail("the pod must run as non-root without privilege escalation")
    print(f"kubernetes: {len(docs)} manifests consistent (grace {grace}s > preStop {sleep}s + shutdown_timeout {shutdown:g}s + 2s)")


def k8s_config(rendered, outdir):
    docs = load_docs(rendered)
    configmap = next(d for d in docs if d["kind"] == "ConfigMap")
    secret = next(d for d in docs if d["kind"] == "Secret")
    text = configmap["data"]["proxy.conf"]
    text = re.sub(r"(?m)^(\s*auth_file\s*=).*$", rf"\1 {outdir}/userlist.txt", text)
    with open(f"{outdir}/proxy.conf", "w") as f:
        f.write(text)
    userlist = secret.get("stringData", {}).get("userlist.txt")
    if userlist is None:
        fail("the Secret has no stringData userlist.txt")
    with open(f"{outdir}/userlist.txt", "w") as f:
        f.write(userlist)


# --- systemd ----------------------------------------------------------------

def seconds(value):
    total, matched = 0.0, False
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*(min|ms|s|m|h)?", value):
        matched = True
        total += float(number) * {"": 1, "s": 1, "ms": 0.001, "min": 60, "m": 60, "h": 3600}[unit or ""]
    if not matched:
        fail(f"cannot read the duration {value!r}")
    return total


def check_systemd(unit, shutdown_timeout):
    keys = {}
    for line in open(unit):
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            k, _, v = line.partition("=")
            keys.setdefault(k.strip(), []).append(v.strip())
    want = {
        "Type": lambda v: v in ("simple", "notify", "exec"),
        "KillSignal": lambda v: v == "SIGTERM",
        "ExecReload": lambda v: "-HUP" in v and "$MAINPID" in v,
        "NoNewPrivileges": lambda v: v == "yes",
        "ProtectSystem": lambda v: v == "strict",
        "LimitNOFILE": lambda v: int(v.split(":")[0]) >= 4096,
        "ExecStart": lambda v: "/etc/switchyard/proxy.conf" in v,
        "ExecStartPre": lambda v: "check-config" in v,
    }
    for key, ok in want.items():
        if key not in keys or not ok(keys[key][-1]):
            fail(f"{unit}: {key}={keys.get(key)} is not what the drain/reload/hardening needs")
    if "User" not in keys and keys.get("DynamicUser", ["no"])[-1] != "yes":
        fail(f"{unit}: needs User= or DynamicUser=yes")
    stop = seconds(keys.get("TimeoutStopSec", ["90"])[-1])
    if stop <= float(shutdown_timeout) + 2:
        fail(f"{unit}: TimeoutStopSec {stop}s must exceed shutdown_timeout {shutdown_timeout}s + 2s")
    print(f"systemd: TimeoutStopSec {stop:g}s > shutdown_timeout {shutdown_timeout}s + 2s; reload, kill signal and hardening keys present")


# --- Grafana and PromQL -----------------------------------------------------

def dashboard_targets(path):
    with open(path) as f:
        dash = json.load(f)
    out = []

    def walk(panels):
        for p in panels:
            if p.get("type") == "row":
                walk(p.get("panels", []))
                continue
            for t in p.get("targets", []):
                out.append((p.get("title", "?"), t.get("expr", "")))
    walk(dash.get("panels", []))
    return dash, out


def check_dashboard(path):
    dash, targets = dashboard_targets(path)
    for key in ("title", "uid", "panels", "schemaVersion"):
        if key not in dash:
            fail(f"{path}: no {key}")
    ids = []
    titles = set()

    def walk(panels):
        for p in panels:
            ids.append(p.get("id"))
            if p.get("type") == "row":
                walk(p.get("panels", []))
                continue
            titles.add(p.get("title"))
            if not p.get("targets"):
                fail(f"{path}: panel {p.get('title')!r} has no query")
            if p.get("datasource", {}).get("uid") != "${datasource}":
                fail(f"{path}: panel {p.get('title')!r} does not use the $datasource variable (not importable as is)")
            g = p.get("gridPos", {})
            if not all(k in g for k in ("h", "w", "x", "y")) or g["x"] + g["w"] > 24:
                fail(f"{path}: panel {p.get('title')!r} has a bad gridPos {g}")
    walk(dash["panels"])
    if len(ids) != len(set(ids)):
        fail(f"{path}: panel ids are not unique")
    names = {v["name"] for v in dash.get("templating", {}).get("list", [])}
    if not {"datasource", "instance"} <= names:
        fail(f"{path}: needs the datasource and instance variables, has {names}")
    for title, expr in targets:
        if not expr.strip():
            fail(f"{path}: panel {title!r} has an empty expression")
    print(f"dashboard: {len(titles)} panels, {len(targets)} queries, ids unique, importable with a $datasource variable")


def rule_exprs(path):
    with open(path) as f:
        rules = yaml.safe_load(f)
    return [(r.get("alert") or r.get("record"), r["expr"]) for g in rules["groups"] for r in g["rules"]]


def substitute(expr):
    """Grafana's variables, as a test evaluates them against every instance."""
    return (expr.replace('"$instance"', '".*"').replace("$__rate_interval", "30s")
            .replace("$__range", "1h").replace("$__interval", "15s"))


PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "by", "without", "on", "ignoring", "group_left", "group_right",
    "and", "or", "unless", "bool", "rate", "irate", "increase", "deriv", "histogram_quantile", "offset",
    "le", "humanize", "abs", "clamp_min", "clamp_max", "label_replace", "topk", "bottomk", "time",
}


def selectors(expr):
    """Metric selectors in an expression: name plus its {matchers}, label names in by() left out."""
    found = []
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", " ", expr)
    for m in re.finditer(r"\b([a-zA-Z_][a-zA-Z0-9_:]*)\s*(\{[^}]*\})?", expr):
        name, matchers = m.group(1), m.group(2) or ""
        start = m.start()
        if name in PROMQL_WORDS or (start > 0 and expr[start - 1] in "\"'"):
            continue
        rest = expr[m.end():].lstrip()
        if rest.startswith("(") and not matchers:
            continue  # a function call
        if re.fullmatch(r"\d+[smhdwy]?", name):
            continue
        found.append(name + matchers)
    return found


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "kubernetes":
        check_kubernetes(*args)
    elif cmd == "k8s-config":
        k8s_config(*args)
    elif cmd == "systemd":
        check_systemd(*args)
    elif cmd == "dashboard":
        check_dashboard(*args)
    elif cmd in ("exprs", "selectors", "metric-names"):
        rules, dash = args
        exprs = [("dashboard: " + t, substitute(e)) for t, e in dashboard_targets(dash)[1]]
        exprs += [("rule: " + n, e) for n, e in rule_exprs(rules)]
        if cmd == "exprs":
            for where, e in exprs:
                print(json.dumps({"where": where, "expr": " ".join(e.split())}))
        else:
            seen = []
            for _, e in exprs:
                for s in selectors(e):
                    item = s if cmd == "selectors" else s.split("{")[0]
                    if item not in seen:
                        seen.append(item)
            print("\n".join(seen))
    elif cmd == "containerfile-packages":
        text = open(args[0]).read()
        m = re.search(r'ARG RUNTIME_PACKAGES="([^"]*)"', text)
        if not m:
            fail(f"{args[0]}: no ARG RUNTIME_PACKAGES=\"...\"")
        print("\n".join(sorted(m.group(1).split())))
    elif cmd == "prometheus-config":
        src, dst, target, rules = args
        with open(src) as f:
            conf = yaml.safe_load(f)
        conf["global"]["scrape_interval"] = "1s"
        conf["global"]["evaluation_interval"] = "1s"
        conf["rule_files"] = [rules]
        jobs = [j for j in conf["scrape_configs"] if j["job_name"] == "switchyard"]
        if len(jobs) != 1:
            fail(f"{src}: expected one scrape job named switchyard")
        jobs[0]["static_configs"] = [{"targets": [target]}]
        with open(dst, "w") as f:
            yaml.safe_dump(conf, f, sort_keys=False)
    else:
        fail(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
