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


def main():
    src, build = sys.argv[1], sys.argv[2]
    kdir = os.path.join(src, "deploy", "kubernetes")
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
            docs[(d["kind"], d["metadata"]["name"])] = d
    dep = docs.get(("Deployment", "splitlm-cloud"))
    check(dep is not None, "no Deployment splitlm-cloud")
    cm = docs.get(("ConfigMap", "splitlm-cloud"))
    check(cm is not None, "no ConfigMap splitlm-cloud")
    secret = docs.get(("Secret", "splitlm-cloud-keys"))
    check(secret is not None, "no Secret splitlm-cloud-keys")
    pod = dep["spec"]["template"]["spec"]
    labels = dep["spec"]["template"]["metadata"]["labels"]
    check(dep["spec"]["selector"]["matchLabels"].items() <= labels.items(), "Deployment selector does not match its pods")
    (c,) = pod["containers"]

    # Flags: each --flag in args is one splitlm-cloud knows.
    cloud = os.path.join(build, "bin", "splitlm-cloud")
    help_text = subprocess.run([cloud, "--help"], capture_output=True, text=True).stdout
    known = set(re.findall(r"^\s+(?:-\w,)?(--[\w-]+)", help_text, re.M))
    args = c["args"]
    for a in args:
        if a.startswith("--"):
            check(a in known, f"deployment.yaml: splitlm-cloud has no flag {a} (known: {sorted(known)})")
    flag = lambda f: args[args.index(f) + 1] if f in args else None

    # The config file: mounted from the ConfigMap, valid for the worker.
    config_path = flag("--config")
    check(config_path is not None, "deployment.yaml: no --config in args")
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    vols = {v["name"]: v for v in pod["volumes"]}
    def volume_of(path):
        for name, m in mounts.items():
            if os.path.dirname(path) == m["mountPath"].rstrip("/"):
                return vols[name], os.path.basename(path)
        fail(f"deployment.yaml: {path} is in no mounted volume")
    vol, key = volume_of(config_path)
    check(vol.get("configMap", {}).get("name") == "splitlm-cloud", f"{config_path} is not from the ConfigMap")
    check(key in cm["data"], f"ConfigMap has no {key}")
    toml_text = cm["data"][key]
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
        f.write(toml_text)
    r = subprocess.run([os.path.join(build, "bin", "splitlm"), "config-keys", "--check", f.name], capture_output=True, text=True)
    os.unlink(f.name)
    check(r.returncode == 0, f"configmap.yaml cloud.toml: {r.stdout}{r.stderr}")
    def toml_value(k):  # flat `key = value` lines of the [cloud] and [model] tables
        m = re.search(rf"^{k}\s*=\s*(\"[^\"]*\"|\S+)", toml_text, re.M)
        return None if m is None else m.group(1).strip('"')

    # Ports: container ports are those the worker binds.
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    bind, http = toml_value("bind"), toml_value("http")
    check(bind is not None and bind.endswith(":" + str(ports.get("zmq"))), f"cloud.bind {bind} != containerPort zmq {ports.get('zmq')}")
    check(http is not None and http.endswith(":" + str(ports.get("http"))), f"cloud.http {http} != containerPort http {ports.get('http')}")
    check(toml_value("http_public") == "true", "cloud.http beyond loopback needs http_public = true")

    # Probes: the paths the worker serves, on its HTTP port.
    worker_src = open(os.path.join(src, "cloud", "main.cpp")).read()
    for probe, path in (("readinessProbe", "/health"), ("livenessProbe", "/health/live"), ("startupProbe", "/health/live")):
        g = c[probe]["httpGet"]
        check(g["path"] == path, f"{probe} asks {g['path']}, expected {path}")
        check(g["port"] in ("http", ports["http"]), f"{probe} is not on the HTTP port")
        check(f'r.target == "{path}"' in worker_src, f"cloud/main.cpp does not serve {path}")

    # Keys: cloud.key and cloud.allow come from the Secret.
    for k in ("key", "allow"):
        p = toml_value(k)
        check(p is not None, f"cloud.{k} is not set (binding beyond loopback needs CURVE)")
        vol, name = volume_of(p)
        check(vol.get("secret", {}).get("secretName") == "splitlm-cloud-keys", f"cloud.{k} {p} is not from the Secret")
        check(name in secret.get("stringData", secret.get("data", {})), f"Secret has no {name}")
    model_dir = toml_value("dir")
    check(any(model_dir.startswith(m["mountPath"].rstrip("/") + "/") for m in c["volumeMounts"]), f"model.dir {model_dir} is in no volume")

    # Draining: SIGKILL comes after the grace period, which must outlast the drain.
    drain = int(flag("--drain-timeout") or toml_value("drain_timeout_s") or 30)
    check(int(toml_value("drain_timeout_s") or drain) == drain, "--drain-timeout and cloud.drain_timeout_s differ")
    grace = pod.get("terminationGracePeriodSeconds", 30)
    check(grace > drain, f"terminationGracePeriodSeconds {grace} <= drain timeout {drain}")
    check(c["resources"]["requests"]["cpu"] == toml_value("threads"), "CPU request != model.threads")

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
    print(f"ok: {len(docs)} manifests; drain {drain} s < grace {grace} s")


if __name__ == "__main__":
    main()
