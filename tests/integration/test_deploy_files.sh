#!/usr/bin/env bash
# The deployment files stay in step with the router. Every command line and environment that
# deploy/start_falconlite.sh (both modes), deploy/Dockerfile and deploy/k8s/*.yaml hand to
# falconlite-router goes through its real parser: the router is run with them and a model
# directory that does not exist, so it must get past argument checking (TGI's rules included)
# and stop at loading the tokenizer (exit 1), never at "falconlite-router: error:" (exit 2).
# Every environment variable is either a router flag's upper-case form or one the engine reads.
# The Kubernetes manifests must parse, be consistent (named ports, volumes, GPUs = shards) and
# pass the Kubernetes API schemas (kubernetes-validate from tests/requirements.txt: it ships the
# schemas, so this runs offline), with the Deployment's readiness and liveness on grpc.health;
# deploy/compose.yaml must have the service structure Compose needs (GPU reservation = shards,
# model volume, ports, healthcheck) and hand the router an environment it accepts.
# Skips (77) when the router is not built; the YAML checks need PyYAML and kubernetes-validate
# (77 after the rest if they are missing).
set -uo pipefail
SRC="${FL_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
ROUTER="${FL_BIN_DIR:-$SRC/build/bin}/falconlite-router"
[ -x "$ROUTER" ] || { echo "skip: $ROUTER not built"; exit 77; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
NO_MODEL="$TMP/no-model"

# router_accepts WHAT [NAME=VALUE ...] -- [ARG ...]: the router parses this environment and
# these arguments (in a clean environment) and reaches model loading.
router_accepts() {
    local what="$1"; shift
    local envs=()
    while [ $# -gt 0 ] && [ "$1" != "--" ]; do envs+=("$1"); shift; done
    shift
    env -i PATH="$PATH" "${envs[@]}" timeout 60 "$ROUTER" "$@" --model-id "$NO_MODEL" \
        >"$TMP/out" 2>&1
    local rc=$?
    if [ $rc -eq 2 ] || grep -q "falconlite-router: error:" "$TMP/out"; then
        fail "$what: the router rejects it: $(cat "$TMP/out")"
    elif ! grep -q "$NO_MODEL/tokenizer.json" "$TMP/out"; then
        fail "$what: exit $rc without reaching model loading: $(cat "$TMP/out")"
    fi
    local e
    for e in "${envs[@]}"; do env_known "$what" "${e%%=*}"; done
}

# A variable is a flag's upper-case form (MAX_INPUT_LENGTH: --max-input-length) or one the
# engine reads (GPTQ_BITS, DNTK_ALPHA_SCALER, ...: named in a getenv of its C sources).
env_known() {
    local what="$1" name="$2"
    local flag
    flag="--$(echo "$name" | tr 'A-Z_' 'a-z-')"
    if grep -q "^  .*$flag\b" "$TMP/usage"; then return; fi
    if grep -rqE "(getenv|env_[a-z]+)\(\"$name\"" "$SRC"/common "$SRC"/shard "$SRC"/kernels \
        "$SRC"/router; then
        return
    fi
    fail "$what: environment variable $name is neither a router flag nor read by the engine"
}

"$ROUTER" --help >"$TMP/usage" 2>&1 || fail "falconlite-router --help: exit $?"

# ---- deploy/Dockerfile: its ENV lines (PATH aside) and entrypoint ----------------------------
DF="$SRC/deploy/Dockerfile"
mapfile -t denv < <(awk '/^ENV /{on=1} on{print} on && !/\\$/{on=0}' "$DF" |
    grep -oE '\b[A-Z_]+=[^ \\]+' | grep -v '^PATH=')
[ ${#denv[@]} -ge 3 ] || fail "Dockerfile: ENV not found (${denv[*]})"
router_accepts "Dockerfile ENV" "${denv[@]}" --
grep -q '^ENTRYPOINT \["falconlite-router"\]' "$DF" || fail "Dockerfile: ENTRYPOINT is not falconlite-router"
grep -q '^USER ' "$DF" || fail "Dockerfile: runs as root"
grep -q -- '-m 0700' "$DF" || fail "Dockerfile: the socket directory is not 0700"
uds=$(printf '%s\n' "${denv[@]}" | sed -n 's/^SHARD_UDS_PATH=//p')
grep -qE "install -d -m 0700 .* $(dirname "$uds")( |\$)" "$DF" ||
    fail "Dockerfile: SHARD_UDS_PATH=$uds is not in the 0700 directory"

# ---- deploy/start_falconlite.sh: docker mode (a stand-in docker records the command line) ----
bash -n "$SRC/deploy/start_falconlite.sh" || fail "start_falconlite.sh: syntax"
mkdir -p "$TMP/fakebin" "$TMP/home/bin"
cat >"$TMP/fakebin/docker" <<'EOF'
#!/usr/bin/env bash
printf '%s\0' "$@" >"$DOCKER_ARGS"
EOF
chmod +x "$TMP/fakebin/docker"
env -i PATH="$TMP/fakebin:$PATH" DOCKER_ARGS="$TMP/docker_args" docker_image_id=IMAGE \
    bash "$SRC/deploy/start_falconlite.sh" >"$TMP/out" 2>&1 || fail "start_falconlite.sh: $(cat "$TMP/out")"
if [ -f "$TMP/docker_args" ]; then
    mapfile -d '' dargs <"$TMP/docker_args"
    envs=() args=() seen_image=0
    for ((i = 0; i < ${#dargs[@]}; i++)); do
        if [ $seen_image = 1 ]; then args+=("${dargs[i]}")
        elif [ "${dargs[i]}" = IMAGE ]; then seen_image=1
        elif [ "${dargs[i]}" = --env ]; then i=$((i + 1)); envs+=("${dargs[i]}"); fi
    done
    [ $seen_image = 1 ] || fail "start_falconlite.sh: no image in: ${dargs[*]}"
    for want in GPTQ_BITS=4 GPTQ_GROUPSIZE=128 DNTK_ALPHA_SCALER=0.25; do
        [[ " ${envs[*]} " == *" $want "* ]] || fail "start_falconlite.sh: docker run lacks --env $want"
    done
    for want in "--num-shard 4" "--max-input-length 12000" "--max-total-tokens 12001" \
        "--max-batch-prefill-tokens 12001" "--max-batch-total-tokens 12001" "--quantize gptq"; do
        [[ " ${args[*]} " == *" $want "* ]] || fail "start_falconlite.sh: router args lack $want"
    done
    # The image's environment applies too.
    router_accepts "start_falconlite.sh (docker)" "${denv[@]}" "${envs[@]}" -- "${args[@]}"
else
    fail "start_falconlite.sh: docker was not run"
fi

# ---- start_falconlite.sh: local mode (the bundle's router is a stand-in that runs the real one)
cat >"$TMP/home/bin/falconlite-router" <<EOF
#!/usr/bin/env bash
env | grep -E '^(GPTQ_|DNTK_)' >"$TMP/local_env"
printf '%s\0' "\$@" >"$TMP/local_args"
EOF
chmod +x "$TMP/home/bin/falconlite-router"
env -i PATH="$PATH" FALCONLITE_LOCAL=1 FALCONLITE_HOME="$TMP/home" \
    bash "$SRC/deploy/start_falconlite.sh" >"$TMP/out" 2>&1 || fail "start_falconlite.sh local: $(cat "$TMP/out")"
if [ -f "$TMP/local_args" ]; then
    mapfile -d '' largs <"$TMP/local_args"
    mapfile -t lenv <"$TMP/local_env"
    [ ${#lenv[@]} -eq 3 ] || fail "start_falconlite.sh local: environment ${lenv[*]}"
    router_accepts "start_falconlite.sh (local)" "${lenv[@]}" -- "${largs[@]}"
else
    fail "start_falconlite.sh local: the router was not run"
fi

# ---- deploy/k8s/*.yaml ----------------------------------------------------------------------
PY=""
for p in "${FL_PYTHON:-}" "$SRC/build/venv/bin/python" python3; do
    if [ -n "$p" ] && command -v "$p" >/dev/null && "$p" -c 'import yaml, kubernetes_validate' 2>/dev/null; then
        PY="$p"; break
    fi
done
if [ -z "$PY" ]; then
    echo "skip: PyYAML or kubernetes-validate (tests/requirements.txt) not available for the deploy/k8s checks"
    [ $fails -eq 0 ] && exit 77
    exit 1
fi
# For each falconlite container, NUL-separated fields: "what", NAME=VALUE..., "--", args..., "@@END".
"$PY" - "$SRC"/deploy/k8s/*.yaml >"$TMP/k8s" 2>"$TMP/k8s_err" <<'EOF'
import sys, yaml

errors = []
def check(ok, msg):
    if not ok: errors.append(msg)

for path in sys.argv[1:]:
    name = path.rsplit("/", 1)[-1]
    try:
        docs = [d for d in yaml.safe_load_all(open(path)) if d]
    except yaml.YAMLError as e:
        errors.append(f"{name}: {e}")
        continue
    check(docs, f"{name}: no documents")
    pods = {}
    for d in docs:
        check("apiVersion" in d and "kind" in d and "metadata" in d, f"{name}: a document lacks apiVersion/kind/metadata")
        if d.get("kind") != "Deployment":
            continue
        spec = d["spec"]
        tpl = spec["template"]
        labels = tpl["metadata"]["labels"]
        check(all(labels.get(k) == v for k, v in spec["selector"]["matchLabels"].items()),
              f"{name}: the selector does not match the pod labels")
        pod = tpl["spec"]
        volumes = {v["name"] for v in pod.get("volumes", [])}
        ports = {}
        for c in pod["containers"]:
            for p in c.get("ports", []):
                ports[p.get("name", p["containerPort"])] = p["containerPort"]
            for m in c.get("volumeMounts", []):
                check(m["name"] in volumes, f"{name}: {c['name']} mounts unknown volume {m['name']}")
            if not c["image"].startswith("falconlite"):
                continue
            env = {e["name"]: str(e["value"]) for e in c.get("env", [])}
            gpus = c.get("resources", {}).get("limits", {}).get("nvidia.com/gpu")
            check(gpus is not None and str(gpus) == env.get("NUM_SHARD"),
                  f"{name}: nvidia.com/gpu {gpus} != NUM_SHARD {env.get('NUM_SHARD')}")
            check(any(m["mountPath"] == "/dev/shm" for m in c.get("volumeMounts", [])),
                  f"{name}: no /dev/shm volume for NCCL")
            if name == "falconlite.yaml":  # reachable from the kubelet: grpc.health on the gRPC port
                for probe in ("readinessProbe", "livenessProbe"):
                    check("grpc" in c.get(probe, {}) and c[probe]["grpc"]["port"] == ports.get("grpc"),
                          f"{name}: {probe} is not a grpc probe on the gRPC port")
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                pr = c.get(probe)
                check(pr is not None, f"{name}: {c['name']} has no {probe}")
                if not pr: continue
                for kind in ("httpGet", "grpc", "tcpSocket"):
                    if kind in pr:
                        port = pr[kind]["port"]
                        known = port in ports or port in ports.values()
                        check(known, f"{name}: {probe} port {port} is not a container port")
                        if kind == "httpGet":
                            check(pr[kind]["path"] == "/health", f"{name}: {probe} path is not /health")
                if "exec" in pr:
                    check("/health" in " ".join(pr["exec"]["command"]), f"{name}: {probe} exec does not check /health")
            fields = ([f"{name} {c['name']}"] + [f"{k}={v}" for k, v in env.items()] + ["--"] +
                      [str(a) for a in c.get("args", [])] + ["@@END"])
            sys.stdout.write("".join(f + "\0" for f in fields))
        pods[tuple(sorted(labels.items()))] = ports
    for d in docs:
        if d.get("kind") != "Service":
            continue
        sel = d["spec"]["selector"]
        match = [p for labels, p in pods.items() if all(dict(labels).get(k) == v for k, v in sel.items())]
        check(match, f"{name}: Service {d['metadata']['name']} selects no pod in this file")
        for sp in d["spec"]["ports"]:
            check(all(sp["targetPort"] in p or sp["targetPort"] in p.values() for p in match),
                  f"{name}: Service port {sp['name']} targets an unknown port {sp['targetPort']}")
for e in errors:
    print(e, file=sys.stderr)
sys.exit(1 if errors else 0)
EOF
[ $? -eq 0 ] || fail "deploy/k8s: $(cat "$TMP/k8s_err")"
n_pods=0 rec=()
mapfile -d '' fields <"$TMP/k8s"
for f in "${fields[@]}"; do
    if [ "$f" != "@@END" ]; then rec+=("$f"); continue; fi
    # The image's environment first: the manifest's env overrides it, as in a pod.
    router_accepts "${rec[0]}" "${denv[@]}" "${rec[@]:1}"
    n_pods=$((n_pods + 1)) rec=()
done
[ $n_pods -ge 2 ] || fail "deploy/k8s: expected the router in falconlite.yaml and sidecar.yaml, found $n_pods"

# The Kubernetes API schemas (strict: unknown fields are errors), offline. A manifest with a
# named port in a grpc probe (the API wants a number) must fail, so the validator is known to bite.
"$PY" -m kubernetes_validate --strict --quiet "$SRC"/deploy/k8s/*.yaml >"$TMP/kv" 2>&1 ||
    fail "deploy/k8s: kubernetes-validate: $(cat "$TMP/kv")"
"$PY" - "$SRC/deploy/k8s/falconlite.yaml" "$TMP/broken.yaml" <<'EOF'
import sys, yaml
docs = list(yaml.safe_load_all(open(sys.argv[1])))
for d in docs:
    if d and d["kind"] == "Deployment":
        d["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["grpc"]["port"] = "grpc"
yaml.safe_dump_all(docs, open(sys.argv[2], "w"))
EOF
"$PY" -m kubernetes_validate --strict --quiet "$TMP/broken.yaml" >"$TMP/kv" 2>&1 &&
    fail "deploy/k8s: kubernetes-validate accepted a grpc probe with a named port"

# ---- deploy/compose.yaml ----------------------------------------------------------------------
"$PY" - "$SRC/deploy/compose.yaml" >"$TMP/compose" 2>"$TMP/compose_err" <<'EOF'
import sys, yaml
errors = []
def check(ok, msg):
    if not ok: errors.append(msg)
c = yaml.safe_load(open(sys.argv[1]))
svc = c.get("services", {}).get("falconlite")
check(isinstance(svc, dict), "no services.falconlite")
svc = svc or {}
check(svc.get("build", {}).get("dockerfile") == "deploy/Dockerfile", "build is not deploy/Dockerfile")
env = {k: str(v) for k, v in (svc.get("environment") or {}).items()}
devs = svc.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
check(len(devs) == 1 and devs[0].get("driver") == "nvidia" and "gpu" in devs[0].get("capabilities", []),
      "no nvidia GPU reservation")
check(devs and str(devs[0].get("count")) == env.get("NUM_SHARD"), f"GPU count != NUM_SHARD {env.get('NUM_SHARD')}")
published = {str(p).split(":")[-1].split("/")[0] for p in svc.get("ports", [])}
check({env.get("PORT"), env.get("GRPC_PORT")} <= published, f"ports {published} lack PORT/GRPC_PORT")
vols = [v for v in svc.get("volumes", []) if isinstance(v, dict)]
check(any(v.get("target") == "/data" and v.get("read_only") for v in vols), "no read-only model volume at /data")
check(env.get("MODEL_ID", "").startswith("/data/"), "MODEL_ID is not on the /data volume")
hc = svc.get("healthcheck", {})
check(hc.get("test", [None])[0] in ("CMD", "CMD-SHELL") and "/health" in " ".join(hc.get("test", [])),
      "healthcheck does not check /health")
check(svc.get("shm_size"), "no shm_size for NCCL")
for e in errors:
    print(e, file=sys.stderr)
sys.stdout.write("".join(f"{k}={v}\0" for k, v in env.items()))
sys.exit(1 if errors else 0)
EOF
[ $? -eq 0 ] || fail "deploy/compose.yaml: $(cat "$TMP/compose_err")"
mapfile -d '' cenv <"$TMP/compose"
router_accepts "compose.yaml" "${denv[@]}" "${cenv[@]}" --

[ $fails -eq 0 ] && echo "deploy files: OK"
exit $((fails > 0))
