#!/usr/bin/env python3
"""deploy_kubernetes_test: the manifests in deploy/kubernetes/ parse, and
agree with what the worker reads, offline (no cluster, no schema download).

    kubernetes_test.py SOURCE_DIR BUILD_DIR

Checks: every file is valid YAML with apiVersion/kind/metadata.name; the
Deployment's container args are flags `splitlm-cloud --help` lists, its
--config path is where the ConfigMap is mounted and holds a key the ConfigMap
has; that TOML passes `splitlm config-keys --check`; the container ports are
the ports of cloud.bind and cloud.http; the probes ask /health (readiness)
and /health/live on the HTTP port, and the worker answers them; the key and
allow-list paths are inside the Secret's mount and name its keys; the grace
period exceeds the drain timeout; the headless Service, HPA and PDB select
and target the Deployment, and the HPA's metric is one the worker exports.
The pipeline stages in pipeline/ (StatefulSets) pass the same worker checks
with their own ConfigMaps, and chain: each --layers K:M --next names a pod
(POD.SERVICE) of another stage's StatefulSet through its headless Service on
its ZeroMQ port, that stage starts at M, the last holds [M, L) with L the
model's layers (annotation splitlm.io/model-layers), and each memory request
covers the stage's weights (splitlm.io/weights-mib) + its KV budget + 512 MiB.
"""
import os
import re
import subprocess
import sys
import tempfile

try:
    import yaml
except ImportError:
    print("FAIL: python3 has no yaml module: apt-get install python3-yaml (cmake/bootstrap.sh does)", file=sys.stderr)
    sys.exit(1)


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


def load_manifests(kdir):
    """(kind, name) -> document, for every .yaml file of kdir."""
    docs = {}
    for name in sorted(os.listdir(kdir)):
        if not name.endswith(".yaml"):
            continue
        path = os.path.join(kdir, name)
        try:
            with open(path) as f:
                loaded = [d for d in yaml.safe_load_all(f) if d is not None]
        except yaml.YAMLError as e:
            fail(f"{path}: not valid YAML: {e}")
        for d in loaded:
            for field in ("apiVersion", "kind", "metadata"):
                check(field in d, f"{path}: no {field}")
            check("name" in d["metadata"], f"{path}: no metadata.name")
            key = (d["kind"], d["metadata"]["name"])
            check(key not in docs, f"{path}: a second {key[0]} {key[1]}")
            docs[key] = d
    return docs


def known_flags(build):
    cloud = os.path.join(build, "bin", "splitlm-cloud")
    help_text = subprocess.run([cloud, "--help"], capture_output=True, text=True).stdout
    return set(re.findall(r"^\s+(?:-\w,)?(--[\w-]+)", help_text, re.M))


def check_worker(where, work, docs, src, build, flags):
    """Checks the worker container of Deployment/StatefulSet `work` against
    its ConfigMap, the Secret and the worker's flags, keys, ports and probes.
    Returns (args, flag(name) -> value, toml_value(key) -> value, ports, pod labels)."""
    secret = docs.get(("Secret", "splitlm-cloud-keys"))
    check(secret is not None, "no Secret splitlm-cloud-keys")
    pod = work["spec"]["template"]["spec"]
    labels = work["spec"]["template"]["metadata"]["labels"]
    check(work["spec"]["selector"]["matchLabels"].items() <= labels.items(), f"{where}: selector does not match its pods")
    (c,) = pod["containers"]

    # Flags: each --flag in args is one splitlm-cloud knows.
    args = [str(a) for a in c["args"]]
    for a in args:
        if a.startswith("--"):
            check(a in flags, f"{where}: splitlm-cloud has no flag {a} (known: {sorted(flags)})")
    flag = lambda f: args[args.index(f) + 1] if f in args else None

    # The config file: mounted from a ConfigMap, valid for the worker.
    config_path = flag("--config")
    check(config_path is not None, f"{where}: no --config in args")
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    vols = {v["name"]: v for v in pod["volumes"]}
    def volume_of(path):
        for name, m in mounts.items():
            if os.path.dirname(path) == m["mountPath"].rstrip("/"):
                return vols[name], os.path.basename(path)
        fail(f"{where}: {path} is in no mounted volume")
    vol, key = volume_of(config_path)
    cm_name = vol.get("configMap", {}).get("name")
    cm = docs.get(("ConfigMap", cm_name))
    check(cm is not None, f"{where}: {config_path} is not from a ConfigMap of the manifests")
    check(key in cm["data"], f"ConfigMap {cm_name} has no {key}")
    toml_text = cm["data"][key]
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
        f.write(toml_text)
    r = subprocess.run([os.path.join(build, "bin", "splitlm"), "config-keys", "--check", f.name], capture_output=True, text=True)
    os.unlink(f.name)
    check(r.returncode == 0, f"ConfigMap {cm_name} {key}: {r.stdout}{r.stderr}")
    def toml_value(k):  # flat `key = value` lines of the [cloud] and [model] tables
        m = re.search(rf"^{k}\s*=\s*(\"[^\"]*\"|\S+)", toml_text, re.M)
        return None if m is None else m.group(1).strip('"')

    # Ports: container ports are those the worker binds.
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    bind, http = toml_value("bind"), toml_value("http")
    check(bind is not None and bind.endswith(":" + str(ports.get("zmq"))), f"{where}: cloud.bind {bind} != containerPort zmq {ports.get('zmq')}")
    check(http is not None and http.endswith(":" + str(ports.get("http"))), f"{where}: cloud.http {http} != containerPort http {ports.get('http')}")
    check(toml_value("http_public") == "true", f"{where}: cloud.http beyond loopback needs http_public = true")

    # Probes: the paths the worker serves, on its HTTP port.
    worker_src = open(os.path.join(src, "cloud", "main.cpp")).read()
    for probe, path in (("readinessProbe", "/health"), ("livenessProbe", "/health/live"), ("startupProbe", "/health/live")):
        g = c[probe]["httpGet"]
        check(g["path"] == path, f"{where}: {probe} asks {g['path']}, expected {path}")
        check(g["port"] in ("http", ports["http"]), f"{where}: {probe} is not on the HTTP port")
        check(f'r.target == "{path}"' in worker_src, f"cloud/main.cpp does not serve {path}")

    # Keys: cloud.key and cloud.allow come from the Secret.
    for k in ("key", "allow"):
        p = toml_value(k)
        check(p is not None, f"{where}: cloud.{k} is not set (binding beyond loopback needs CURVE)")
        vol, name = volume_of(p)
        check(vol.get("secret", {}).get("secretName") == "splitlm-cloud-keys", f"{where}: cloud.{k} {p} is not from the Secret")
        check(name in secret.get("stringData", secret.get("data", {})), f"Secret has no {name}")
    model_dir = toml_value("dir")
    check(any(model_dir.startswith(m["mountPath"].rstrip("/") + "/") for m in c["volumeMounts"]), f"{where}: model.dir {model_dir} is in no volume")

    # Draining: SIGKILL comes after the grace period, which must outlast the drain.
    drain = int(flag("--drain-timeout") or toml_value("drain_timeout_s") or 30)
    check(int(toml_value("drain_timeout_s") or drain) == drain, f"{where}: --drain-timeout and cloud.drain_timeout_s differ")
    grace = pod.get("terminationGracePeriodSeconds", 30)
    check(grace > drain, f"{where}: terminationGracePeriodSeconds {grace} <= drain timeout {drain}")
    check(c["resources"]["requests"]["cpu"] == toml_value("threads"), f"{where}: CPU request != model.threads")
    return args, flag, toml_value, ports, labels, c, drain, grace


def mib(quantity):
    """A Kubernetes memory quantity in MiB."""
    m = re.fullmatch(r"(\d+)(Mi|Gi)", str(quantity))
    check(m is not None, f"memory {quantity}: expected NMi or NGi")
    return int(m.group(1)) * (1024 if m.group(2) == "Gi" else 1)


def check_pipeline(pdir, docs, src, build, flags):
    """The pipeline stages in deploy/kubernetes/pipeline/: StatefulSets whose
    workers chain by --layers K:M --next to the next stage's pod, ending at a
    worker holding [M, L) and the head."""
    docs = dict(docs)
    pdocs = load_manifests(pdir)
    for k in pdocs:
        check(k not in docs, f"pipeline/: {k[0]} {k[1]} is also in deploy/kubernetes/")
    docs.update(pdocs)
    stages = {name: d for (kind, name), d in pdocs.items() if kind == "StatefulSet"}
    check(len(stages) >= 2, "pipeline/: fewer than two StatefulSets")
    ranges = {}  # name -> (begin, end or None, next host, ...)
    for name, sts in stages.items():
        where = f"pipeline StatefulSet {name}"
        args, flag, toml_value, ports, labels, c, _, _ = check_worker(where, sts, docs, src, build, flags)
        svc = docs.get(("Service", sts["spec"].get("serviceName")))
        check(svc is not None and svc["spec"].get("clusterIP") == "None", f"{where}: serviceName is not a headless Service")
        check(svc["spec"]["selector"].items() <= labels.items(), f"{where}: its Service does not select its pods")
        check(any(p.get("targetPort") in ("zmq", ports["zmq"]) and p.get("port") == ports["zmq"] for p in svc["spec"]["ports"]),
              f"{where}: its Service does not expose the ZeroMQ port {ports['zmq']}")
        layers = sts["metadata"].get("annotations", {}).get("splitlm.io/model-layers")
        check(layers is not None, f"{where}: no splitlm.io/model-layers annotation")
        layers = int(layers)
        if flag("--layers") is not None:
            m = re.fullmatch(r"(\d+):(\d+)", flag("--layers"))
            check(m is not None, f"{where}: --layers {flag('--layers')} is not K:M")
            check(toml_value("min_cut") is None, f"{where}: --layers and cloud.min_cut both set the first layer")
            begin, end = int(m.group(1)), int(m.group(2))
            nxt = flag("--next")
            check(nxt is not None, f"{where}: --layers without --next")
        else:
            check(flag("--next") is None, f"{where}: --next without --layers")
            begin, end, nxt = int(flag("--min-cut") or toml_value("min_cut") or 0), layers, None
        check(0 <= begin < end <= layers, f"{where}: layers [{begin}, {end}) outside [0, {layers})")
        # Memory: the stage's weights + its KV budget + 512 MiB for the runtime.
        weights = sts["metadata"]["annotations"].get("splitlm.io/weights-mib")
        check(weights is not None, f"{where}: no splitlm.io/weights-mib annotation")
        need = int(weights) + float(toml_value("kv_budget_mb") or 2048) * 1e6 / 2**20 + 512
        req = mib(c["resources"]["requests"]["memory"])
        check(req >= need, f"{where}: memory request {req} MiB < weights + KV budget + 512 MiB = {need:.0f} MiB")
        check(mib(c["resources"]["limits"]["memory"]) >= req, f"{where}: memory limit below the request")
        ranges[name] = (begin, end, nxt, ports["zmq"], layers)

    # The chain: each --next names a pod of another stage, by the stable name
    # POD.SERVICE (optionally .NAMESPACE.svc...), on that stage's port, and
    # that stage starts where this one ends; one stage ends at L; the first
    # stage is what devices connect to.
    starts = {}
    for name, (begin, end, nxt, port, layers) in ranges.items():
        if nxt is None:
            check(end == layers, f"pipeline StatefulSet {name}: the last stage must hold [M, L) with L = {layers}")
            continue
        m = re.fullmatch(r"tcp://([a-z0-9-]+)\.([a-z0-9-]+)(\.[a-z0-9.-]+)?:(\d+)", nxt)
        check(m is not None, f"pipeline StatefulSet {name}: --next {nxt} is not tcp://POD.SERVICE[.NAMESPACE...]:PORT")
        pod_name, svc_name, nport = m.group(1), m.group(2), int(m.group(4))
        targets = [n for n, s in stages.items() if s["spec"]["serviceName"] == svc_name]
        check(len(targets) == 1, f"pipeline StatefulSet {name}: --next names Service {svc_name}, which no StatefulSet uses")
        target = targets[0]
        om = re.fullmatch(re.escape(target) + r"-(\d+)", pod_name)
        check(om is not None and int(om.group(1)) < stages[target]["spec"].get("replicas", 1),
              f"pipeline StatefulSet {name}: --next names pod {pod_name}, not a pod of StatefulSet {target}")
        check(nport == ranges[target][3], f"pipeline StatefulSet {name}: --next port {nport} != {target}'s {ranges[target][3]}")
        check(ranges[target][0] == end, f"pipeline StatefulSet {name}: ends at {end} but {target} starts at {ranges[target][0]}")
        starts[target] = name
    firsts = [n for n in ranges if n not in starts]
    check(len(firsts) == 1, f"pipeline/: not one chain (first stages: {firsts})")
    covered, at, seen = [], firsts[0], set()
    while at is not None:
        check(at not in seen, "pipeline/: the chain loops")
        seen.add(at)
        covered.append(ranges[at][:2])
        nxt = ranges[at][2]
        at = None if nxt is None else next(n for n in starts if starts[n] == at)
    check(len(seen) == len(ranges), f"pipeline/: stages outside the chain: {sorted(set(ranges) - seen)}")
    check(covered[-1][1] == ranges[firsts[0]][4], "pipeline/: the chain does not reach L")
    return " -> ".join(f"[{b}, {e})" for b, e in covered)


def main():
    src, build = sys.argv[1], sys.argv[2]
    kdir = os.path.join(src, "deploy", "kubernetes")
    docs = load_manifests(kdir)
    dep = docs.get(("Deployment", "splitlm-cloud"))
    check(dep is not None, "no Deployment splitlm-cloud")
    check(("ConfigMap", "splitlm-cloud") in docs, "no ConfigMap splitlm-cloud")
    flags = known_flags(build)
    args, flag, toml_value, ports, labels, c, drain, grace = check_worker("deployment.yaml", dep, docs, src, build, flags)

    # Service, HPA, PDB.
    svc = docs.get(("Service", "splitlm-cloud"))
    check(svc is not None and svc["spec"].get("clusterIP") == "None", "no headless Service splitlm-cloud")
    check(svc["spec"]["selector"].items() <= labels.items(), "Service selector does not match the pods")
    check(any(p.get("targetPort") in ("zmq", ports["zmq"]) for p in svc["spec"]["ports"]), "Service does not expose the ZeroMQ port")
    hpa = docs.get(("HorizontalPodAutoscaler", "splitlm-cloud"))
    check(hpa is not None, "no HorizontalPodAutoscaler")
    check(hpa["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"], "HPA does not target the Deployment")
    worker_cpp = open(os.path.join(src, "cloud", "worker.cpp")).read()
    for m in hpa["spec"]["metrics"]:
        name = m["pods"]["metric"]["name"]
        check(f'"{name}"' in worker_cpp, f"HPA metric {name} is not one the worker exports")
    pdb = docs.get(("PodDisruptionBudget", "splitlm-cloud"))
    check(pdb is not None and pdb["spec"]["selector"]["matchLabels"].items() <= labels.items(), "no PDB selecting the pods")
    chain = check_pipeline(os.path.join(kdir, "pipeline"), docs, src, build, flags)
    print(f"ok: {len(docs)} manifests; drain {drain} s < grace {grace} s; pipeline {chain}")


if __name__ == "__main__":
    main()
