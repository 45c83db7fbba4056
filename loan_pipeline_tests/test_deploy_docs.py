"""The production layout on paper (docs/deploy/) stays honest about the code: the files parse,
every variable they set is one the pipeline reads, the Helm values keep the instance's run queue
and limits of docs/deploy/dagster.yaml, the names that tie the files together agree, and the
image installs this project. Reads files only: no network, no cluster, no Docker."""

from __future__ import annotations

import ast
import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "docs" / "deploy"
SETTINGS = ROOT / "loan_pipeline" / "settings.py"

# Variables of the pipeline (LOAN_BOOK_CSV and LOAN_PIPELINE_*), of its Dask cluster, and of the
# PostgreSQL instance template: a deploy file that sets one the code does not read is a typo.
CHECKED_PREFIXES = ("LOAN_", "DASK_", "DAGSTER_PG_")


def _yaml(name: str) -> list:
    return [doc for doc in yaml.safe_load_all((DEPLOY / name).read_text()) if doc is not None]


def _one(name: str) -> dict:
    (doc,) = _yaml(name)
    return doc


def _kind(name: str, kind: str) -> dict:
    (doc,) = [d for d in _yaml(name) if d.get("kind") == kind]
    return doc


# --- what the deploy files set -------------------------------------------------------------


def _env_set_in_yaml(node) -> set[str]:
    """Names set as environment variables anywhere in a YAML document: Kubernetes `env:` lists
    (and the chart's `env:` maps), and the run launcher's `envVars: [KEY=VALUE]`."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "env" and isinstance(value, list):
                found |= {item["name"] for item in value if isinstance(item, dict)}
            elif key == "env" and isinstance(value, dict):
                found |= set(value)
            elif key == "envVars" and isinstance(value, list):
                found |= {str(item).split("=", 1)[0] for item in value}
            found |= _env_set_in_yaml(value)
    elif isinstance(node, list):
        for item in node:
            found |= _env_set_in_yaml(item)
    return found


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of docs/deploy/Dockerfile, continuation lines joined."""
    text = (DEPLOY / "Dockerfile").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    out = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _env_set_in_dockerfile() -> set[str]:
    found = set()
    for word, rest in _dockerfile_instructions():
        if word == "ENV":
            tokens = shlex.split(rest)
            if tokens and "=" not in tokens[0]:  # ENV KEY value
                found.add(tokens[0])
            else:
                found |= {t.split("=", 1)[0] for t in tokens}
    return found


def _env_set_in_markdown(text: str) -> set[str]:
    """`NAME=value` in the README (its shell blocks and inline examples)."""
    return set(re.findall(r"(?<![\w./-])([A-Z][A-Z0-9_]*)=", text))


def env_set_by_deploy_files() -> dict[str, set[str]]:
    found = {}
    for path in sorted(DEPLOY.iterdir()):
        if path.suffix in (".yaml", ".yml"):
            names = set().union(*(_env_set_in_yaml(d) for d in _yaml(path.name)))
        elif path.name == "Dockerfile":
            names = _env_set_in_dockerfile()
        elif path.suffix == ".md":
            names = _env_set_in_markdown(path.read_text())
        else:
            continue
        found[path.name] = names
    return found


# --- what the code reads -------------------------------------------------------------------


def env_read_by_settings() -> set[str]:
    """Every name `settings.py` reads: os.environ.get("X"), os.environ["X"], os.getenv("X")."""
    names = set()
    for node in ast.walk(ast.parse(SETTINGS.read_text())):
        target = None
        if isinstance(node, ast.Call) and node.args:
            func = ast.unparse(node.func)
            if func in ("os.environ.get", "os.getenv", "os.environ.setdefault"):
                target = node.args[0]
        elif isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":
            target = node.slice
        if isinstance(target, ast.Constant) and isinstance(target.value, str):
            names.add(target.value)
    return names


def env_read_by_instance_template(node=None) -> set[str]:
    """Every `{env: NAME}` of docs/deploy/dagster.yaml."""
    if node is None:
        node = _one("dagster.yaml")
    names = set()
    if isinstance(node, dict):
        if set(node) == {"env"} and isinstance(node["env"], str):
            names.add(node["env"])
        for value in node.values():
            names |= env_read_by_instance_template(value)
    elif isinstance(node, list):
        for item in node:
            names |= env_read_by_instance_template(item)
    return names


# --- the tests -----------------------------------------------------------------------------


def test_every_yaml_file_in_docs_deploy_parses():
    files = sorted(DEPLOY.glob("*.y*ml"))
    assert {p.name for p in files} >= {
        "dagster.yaml",
        "helm-values.yaml",
        "dask-cluster.yaml",
        "volume.yaml",
    }
    for path in files:
        docs = _yaml(path.name)
        assert docs, f"{path.name} is empty"
        assert all(isinstance(d, dict) for d in docs), path.name


def test_the_readers_are_found():
    """The two readers the next test relies on see what they should (not an empty set)."""
    assert {
        "LOAN_BOOK_CSV",
        "LOAN_PIPELINE_STORAGE",
        "LOAN_PIPELINE_DATASETS",
        "DASK_SCHEDULER_ADDRESS",
    } <= env_read_by_settings()
    assert {"DAGSTER_PG_PASSWORD", "DAGSTER_PG_HOST"} <= env_read_by_instance_template()


def test_every_variable_the_deploy_files_set_is_read_by_the_pipeline():
    read = env_read_by_settings() | env_read_by_instance_template()
    set_by = env_set_by_deploy_files()
    # the extraction found the variables that move the pipeline onto the cluster
    assert {"DASK_SCHEDULER_ADDRESS", "LOAN_PIPELINE_DATASETS", "LOAN_PIPELINE_STORAGE"} <= set_by[
        "helm-values.yaml"
    ]
    assert "DASK_SCHEDULER_ADDRESS" in set_by["README.md"]
    unknown = {
        f"{file}: {name}"
        for file, names in set_by.items()
        for name in names
        if name.startswith(CHECKED_PREFIXES) and name not in read
    }
    assert not unknown, (
        "set in docs/deploy but read neither by loan_pipeline/settings.py nor by "
        f"docs/deploy/dagster.yaml: {sorted(unknown)}"
    )


def test_helm_values_keep_the_run_queue_and_limits_of_the_instance_template():
    instance = _one("dagster.yaml")
    values = _one("helm-values.yaml")

    concurrency = values["concurrency"]
    assert concurrency["enabled"] is True
    runs, want_runs = concurrency["runs"], instance["concurrency"]["runs"]
    assert runs["maxConcurrentRuns"] == want_runs["max_concurrent_runs"] == 1
    assert [
        {"key": t["key"], "value": t.get("value"), "limit": t["limit"]}
        for t in runs["tagConcurrencyLimits"]
    ] == [
        {"key": t["key"], "value": t.get("value"), "limit": t["limit"]}
        for t in want_runs["tag_concurrency_limits"]
    ]
    pools, want_pools = concurrency["pools"], instance["concurrency"]["pools"]
    assert pools == {
        "defaultLimit": want_pools["default_limit"],
        "granularity": want_pools["granularity"],
    }

    coordinator = values["dagsterDaemon"]["runCoordinator"]
    assert coordinator["enabled"] is True
    custom = coordinator["config"]["customRunCoordinator"]
    assert (custom["module"], custom["class"]) == (
        "dagster.core.run_coordinator",
        "QueuedRunCoordinator",
    )
    assert custom["config"] == instance["run_queue"]
    # the run limits only under concurrency (Dagster refuses them in both places)
    assert "max_concurrent_runs" not in custom["config"]
    assert "tag_concurrency_limits" not in custom["config"]

    monitoring = values["dagsterDaemon"]["runMonitoring"]
    assert monitoring["enabled"] is instance["run_monitoring"]["enabled"] is True
    assert (
        monitoring["freeSlotsAfterRunEndSeconds"]
        == instance["run_monitoring"]["free_slots_after_run_end_seconds"]
    )
    assert values["telemetry"] == instance["telemetry"]
    scheme = instance["storage"]["postgres"]["postgres_db"]["scheme"]
    assert values["postgresql"]["postgresqlScheme"] == scheme


def _launcher_env(values: dict) -> dict[str, str]:
    launcher = values["runLauncher"]
    assert launcher["type"] == "K8sRunLauncher"
    env_vars = launcher["config"]["k8sRunLauncher"]["envVars"]
    return dict(item.split("=", 1) for item in env_vars)


def test_the_run_pods_reach_the_scheduler_service_the_operator_makes():
    values = _one("helm-values.yaml")
    cluster = _kind("dask-cluster.yaml", "DaskCluster")
    name, namespace = cluster["metadata"]["name"], cluster["metadata"]["namespace"]
    comm = [p for p in cluster["spec"]["scheduler"]["service"]["ports"] if p["name"] == "tcp-comm"]
    address = _launcher_env(values)["DASK_SCHEDULER_ADDRESS"]
    match = re.fullmatch(r"tcp://([^:/]+):(\d+)", address)
    assert match, address
    host, port = match.groups()
    # the operator names the scheduler's Service `<cluster name>-scheduler`
    assert host in (f"{name}-scheduler", f"{name}-scheduler.{namespace}.svc.cluster.local")
    assert int(port) == comm[0]["port"] == 8786


def _image(spec: dict) -> str:
    return f"{spec['repository']}:{spec['tag']}"


def test_one_image_for_the_code_server_the_runs_and_the_dask_pods():
    values = _one("helm-values.yaml")
    cluster = _kind("dask-cluster.yaml", "DaskCluster")
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    images = {_image(deployment["image"])}
    for role in ("scheduler", "worker"):
        images |= {c["image"] for c in cluster["spec"][role]["spec"]["containers"]}
    assert len(images) == 1, images
    # no separate run image: runs use the code location's
    assert "image" not in values["runLauncher"]["config"]["k8sRunLauncher"]
    # the code location is the module workspace.yaml loads
    workspace = yaml.safe_load((ROOT / "workspace.yaml").read_text())
    module = workspace["load_from"][0]["python_module"]
    assert deployment["dagsterApiGrpcArgs"] == [
        "-m",
        module["module_name"],
        "-a",
        module["attribute"],
    ]


def test_run_pods_and_code_server_mount_the_same_volume_as_the_claim():
    values = _one("helm-values.yaml")
    claim = _one("volume.yaml")
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    # identical entries, which Dagster merges into one when the run pod gets both
    assert launcher["volumes"] == deployment["volumes"]
    assert launcher["volumeMounts"] == deployment["volumeMounts"]
    claims = {v["persistentVolumeClaim"]["claimName"] for v in launcher["volumes"]}
    assert claims == {claim["metadata"]["name"]}
    assert "ReadWriteMany" in claim["spec"]["accessModes"]
    (mount,) = launcher["volumeMounts"]
    env = _launcher_env(values) | {e["name"]: e["value"] for e in deployment["env"]}
    for name in ("LOAN_PIPELINE_STORAGE", "LOAN_BOOK_CSV", "LOAN_PIPELINE_INCOMING"):
        assert env[name].startswith(mount["mountPath"] + "/"), name


def _memory_bytes(text: str) -> float:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30}
    number, unit = re.fullmatch(r"([\d.]+)([A-Za-z]*)", text).groups()
    return float(number) * units.get(unit, 1)


def test_dask_workers_spill_before_their_container_limit():
    cluster = _kind("dask-cluster.yaml", "DaskCluster")
    (worker,) = cluster["spec"]["worker"]["spec"]["containers"]
    args = worker["args"]
    assert args[:2] == ["dask", "worker"]
    limit = _memory_bytes(args[args.index("--memory-limit") + 1])
    assert limit < _memory_bytes(worker["resources"]["limits"]["memory"])


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _pins() -> dict[str, str]:
    pins = {}
    for requirement in _pyproject()["project"]["dependencies"]:
        name, sep, version = requirement.partition("==")
        if sep:
            pins[name.split("[")[0].strip()] = version.strip()
    return pins


def test_the_image_installs_this_project():
    instructions = _dockerfile_instructions()
    workdir = None
    copied: dict[str, set[str]] = {}
    installs = []
    for word, rest in instructions:
        if word == "WORKDIR":
            workdir = rest
        elif word == "COPY":
            *sources, dest = shlex.split(rest)
            copied.setdefault(workdir, set()).update(s.rstrip("/") for s in sources)
        elif word == "RUN" and re.search(r"\bpip install\b", rest):
            installs.append(shlex.split(rest))
    assert len(installs) == 1, installs
    (tokens,) = installs
    targets = [t for t in tokens[tokens.index("install") + 1 :] if not t.startswith("-")]
    # "." is the project: its pyproject.toml and package were copied into the working directory
    assert "." in targets
    assert {"pyproject.toml", "README.md", "loan_pipeline"} <= copied[workdir]
    assert _pyproject()["project"]["name"] == "loan_pipeline"
    # the extras of the deployment, pinned; dagster-k8s in Dagster's lockstep (1.13.N <-> 0.29.N)
    extras = dict(t.split("==", 1) for t in targets if t != ".")
    assert set(extras) == {"dagster-k8s", "s3fs"}
    assert extras["dagster-k8s"] == _pins()["dagster-postgres"]
    # and neither is a project dependency (the laptop needs neither)
    declared = " ".join(_pyproject()["project"]["dependencies"])
    assert "s3fs" not in declared and "dagster-k8s" not in declared
    # no ENTRYPOINT: the chart and the operator give the command
    assert "ENTRYPOINT" not in {word for word, _ in instructions}


@pytest.mark.parametrize("name", ["helm-values.yaml", "README.md"])
def test_the_chart_version_is_the_pinned_dagster(name):
    versions = re.findall(r"dagster/dagster --version (\S+)", (DEPLOY / name).read_text())
    assert versions and set(versions) == {_pins()["dagster"]}
