"""Checks on the deployment files: Dockerfile, docker/entrypoint.sh, docker-compose.yml, render.yaml,
.github/workflows/ci.yml and .env.example.

No Docker engine is needed: the files are parsed and cross-checked against each other and against
crowd_monitor/settings.py. Standalone:

    python -m pytest tests/test_deploy_files.py -q
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import json
import os
import re
import shlex
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
APP_SERVICES = ("web", "worker", "alerts")
# Variables the container reads (Dockerfile CMD, docker/entrypoint.sh), not Django.
DEPLOY_ONLY = {"PORT", "WEB_CONCURRENCY", "RUN_MIGRATIONS"}
RENDER_SERVICE_TYPES = {"web", "worker", "pserv", "cron", "keyvalue", "redis"}
INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}")


def read(name: str) -> str:
    return (ROOT / name).read_text(encoding="utf-8")


def load_yaml(name: str) -> dict:
    data = yaml.safe_load(read(name))
    assert isinstance(data, dict), f"{name} is not a YAML mapping"
    return data


def settings_names() -> set[str]:
    """Every NAME read by python-decouple's config("NAME", ...) in settings.py."""
    names = set(re.findall(r"\bconfig\(\s*[\"']([A-Za-z_][A-Za-z0-9_]*)[\"']", read("crowd_monitor/settings.py")))
    assert names, "no config(...) calls found in crowd_monitor/settings.py"
    return names


def settings_literal_defaults() -> dict[str, object]:
    """NAME: default for each config("NAME", default=<literal>) in settings.py."""
    defaults = {}
    for call in ast.walk(ast.parse(read("crowd_monitor/settings.py"))):
        if isinstance(call, ast.Call) and getattr(call.func, "id", None) == "config" and call.args:
            default = next((k.value for k in call.keywords if k.arg == "default"), None)
            if isinstance(call.args[0], ast.Constant) and default is not None:
                with contextlib.suppress(ValueError):  # computed (not DEBUG, 12 * 3600...): not a literal
                    defaults[call.args[0].value] = ast.literal_eval(default)
    return defaults


def env_example_names() -> set[str]:
    """Keys in .env.example, set (NAME=...) or shown with their default (# NAME=...)."""
    return set(re.findall(r"^#?[ \t]*([A-Z][A-Z0-9_]*)=", read(".env.example"), flags=re.MULTILINE))


def command_text(command) -> str:
    return command if isinstance(command, str) else shlex.join(command)


# --- settings <-> .env.example ---------------------------------------------------------------------------


def test_every_setting_is_documented_in_env_example():
    missing = settings_names() - env_example_names()
    assert not missing, f".env.example lacks settings read in settings.py: {sorted(missing)}"


def test_env_example_lists_only_real_settings():
    unknown = env_example_names() - settings_names() - DEPLOY_ONLY
    assert not unknown, f".env.example lists names settings.py never reads: {sorted(unknown)}"


def test_env_example_holds_no_real_secret_and_is_for_development():
    active = dict(re.findall(r"^([A-Z][A-Z0-9_]*)=(.*)$", read(".env.example"), flags=re.MULTILINE))
    assert active.get("SECRET_KEY", "").startswith("change-me")
    assert active.get("DEBUG") == "True"
    for key in ("EMAIL_HOST_PASSWORD",):
        assert not active.get(key), f"{key} must not carry a value in .env.example"


# --- docker-compose.yml ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_yaml("docker-compose.yml")


def test_compose_has_all_services(compose):
    assert {"db", "redis", *APP_SERVICES} <= set(compose["services"])
    assert compose["services"]["db"]["image"].startswith("postgres:16")
    assert compose["services"]["redis"]["image"].startswith("redis:7")
    for name in ("db", "redis"):
        assert compose["services"][name]["healthcheck"]["test"], f"{name} needs a healthcheck"


def test_app_services_share_one_image(compose):
    services = compose["services"]
    builds = {json.dumps(services[name].get("build"), sort_keys=True) for name in APP_SERVICES}
    images = {services[name].get("image") for name in APP_SERVICES}
    assert len(builds) == 1 and builds != {"null"}, f"web/worker/alerts must build the same image: {builds}"
    assert len(images) == 1, f"web/worker/alerts must share one image name: {images}"


def test_compose_commands(compose):
    services = compose["services"]
    assert "command" not in services["web"], "web runs the image's default CMD (gunicorn)"
    worker = command_text(services["worker"]["command"])
    # No --mode: every camera counts with its own mode (auto by default, dense crowds included).
    assert "manage.py run_detection" in worker and "--mode" not in worker
    assert "manage.py run_alerts" in command_text(services["alerts"]["command"])
    assert services["worker"]["stop_signal"] == "SIGTERM"
    assert "./models:/models:ro" in services["worker"]["volumes"]


def test_only_web_migrates_and_waits_for_backing_services(compose):
    services = compose["services"]
    assert str(services["web"]["environment"]["RUN_MIGRATIONS"]) == "1"
    for name in ("worker", "alerts"):
        assert "RUN_MIGRATIONS" not in services[name]["environment"], f"{name} must not migrate"
    for name in APP_SERVICES:
        depends = services[name]["depends_on"]
        for backing in ("db", "redis"):
            assert depends[backing]["condition"] == "service_healthy", f"{name} -> {backing}"


def test_compose_app_environment(compose):
    known = settings_names() | DEPLOY_ONLY
    for name in APP_SERVICES:
        env = compose["services"][name]["environment"]
        assert isinstance(env, dict)
        unknown = set(env) - known
        assert not unknown, f"{name} sets variables settings.py never reads: {sorted(unknown)}"
        assert env["DATABASE_URL"].startswith("postgres://") and "@db:5432/" in env["DATABASE_URL"]
        assert env["REDIS_URL"].startswith("redis://redis:6379")
        for flag in ("SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE"):
            assert str(env[flag]).lower() == "false", f"{name}: {flag} must be off for local http"
        assert "yolov8n.pt" in env["DETECTION_MODEL"]


def test_compose_interpolated_variables_exist():
    """Each ${VAR} has a default, is required with a message, or is documented in .env.example."""
    text = read("docker-compose.yml")
    found = INTERPOLATION.findall(text)
    assert found, "expected ${VAR} interpolation in docker-compose.yml"
    known = settings_names() | DEPLOY_ONLY
    documented = env_example_names()
    for name, operator, _rest in found:
        assert name in known, f"${{{name}}} is not a setting read by settings.py"
        if not operator:
            assert name in documented, f"${{{name}}} has no default and is not in .env.example"
    secret = [(op, rest) for name, op, rest in found if name == "SECRET_KEY"]
    assert secret and all(op == ":?" and rest for op, rest in secret), "SECRET_KEY must be required (:?message)"


# Settings an operator must be able to give the compose stack from the shell or .env (the containers see only the
# variables docker-compose.yml lists): where alerts are emailed or texted from, and the /metrics token.
COMPOSE_OPERATOR_SETTINGS = {
    "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
    "EMAIL_HOST": "smtp.example.org",
    "EMAIL_PORT": "587",
    "EMAIL_HOST_USER": "alerts",
    "EMAIL_HOST_PASSWORD": "not-a-real-password",
    "EMAIL_USE_TLS": "True",
    "DEFAULT_FROM_EMAIL": "crowd-monitor@example.org",
    "SMS_BACKEND": "alerts.sms.LocmemSmsBackend",
    "METRICS_TOKEN": "not-a-real-token",
}


def interpolate(value: str, variables: dict[str, str]) -> str:
    """docker compose's ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error} and ${VAR:+alt}."""

    def one(match: re.Match) -> str:
        name, operator, rest = match.group(1), match.group(2) or "", match.group(3) or ""
        present, given = name in variables, variables.get(name, "")
        if operator in (":-", "-"):
            return given if (given if operator == ":-" else present) else rest
        if operator in (":?", "?"):
            assert given if operator == ":?" else present, f"compose would refuse to start: {rest}"
            return given
        if operator == ":+":
            return rest if given else ""
        return given

    return INTERPOLATION.sub(one, value)


def settings_in_container(environment: dict[str, str], names: list[str]) -> dict[str, object]:
    """The settings a container with exactly this environment loads (in a fresh interpreter)."""
    env = {"PATH": os.environ["PATH"], "DJANGO_SETTINGS_MODULE": "crowd_monitor.settings", **environment}
    code = (
        "import json; from django.conf import settings; "
        f"print(json.dumps({{n: getattr(settings, n) for n in {names!r}}}))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def test_compose_passes_operator_settings_through(compose):
    """Email, SMS and /metrics settings from the shell or .env reach every app container (each one sends alerts).

    docker compose hands a container only the variables listed under `environment`; .env beside the compose
    file serves ${...} interpolation only. Without these entries an operator's SMTP settings never reached the
    containers, and alert emails went to the console backend (the log) without a word.
    """
    names = sorted(COMPOSE_OPERATOR_SETTINGS)
    for service in APP_SERVICES:
        environment = compose["services"][service]["environment"]
        missing = [name for name in names if name not in environment]
        assert not missing, f"{service}: {missing} cannot be set from the shell or .env"
        given = {
            key: interpolate(str(value), {"SECRET_KEY": "x" * 50, **COMPOSE_OPERATOR_SETTINGS})
            for key, value in environment.items()
        }
        loaded = settings_in_container(given, names)
        assert {n: str(loaded[n]) for n in names} == COMPOSE_OPERATOR_SETTINGS, service


def test_compose_defaults_are_the_settings_defaults(compose):
    """With nothing set, each ${VAR:-default} gives what settings.py would use (never an empty EMAIL_PORT)."""
    defaults = settings_literal_defaults()
    names = sorted(COMPOSE_OPERATOR_SETTINGS)
    environment = compose["services"]["web"]["environment"]
    given = {key: interpolate(str(value), {"SECRET_KEY": "x" * 50}) for key, value in environment.items()}
    assert settings_in_container(given, names) == {name: defaults[name] for name in names}


def test_a_development_env_file_does_not_turn_debug_on_in_compose(compose):
    """`scripts/run` writes a .env with DEBUG=True beside docker-compose.yml, which compose reads for ${...}: the
    production-like stack must stay DEBUG off (no tracebacks to visitors, secure defaults) all the same."""
    development_env = {"DEBUG": "True", "SECRET_KEY": "x" * 50}
    for service in APP_SERVICES:
        environment = compose["services"][service]["environment"]
        given = {key: interpolate(str(value), development_env) for key, value in environment.items()}
        assert settings_in_container(given, ["DEBUG"]) == {"DEBUG": False}, service


def test_compose_matches_compose_spec(compose):
    """Validated by the compose-spec parser when the `compose-spec` package is installed."""
    compose_spec = pytest.importorskip("compose_spec", reason="compose-spec not installed: structural checks only")
    # PyYAML has already resolved anchors and merge keys, as docker compose does.
    parsed = compose_spec.PyCompose.from_json(json.dumps(compose))
    assert set(parsed.service_names()) == set(compose["services"])


# --- render.yaml -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def render() -> dict:
    return load_yaml("render.yaml")


def render_env(service: dict, groups: dict[str, list[dict]]) -> dict[str, dict]:
    entries: dict[str, dict] = {}
    for entry in service.get("envVars", []):
        if "fromGroup" in entry:
            entries.update({e["key"]: e for e in groups[entry["fromGroup"]]})
        else:
            entries[entry["key"]] = entry
    return entries


def test_render_blueprint(render):
    services = render["services"]
    assert all(s["type"] in RENDER_SERVICE_TYPES for s in services), [s["type"] for s in services]
    names = [s["name"] for s in services] + [d["name"] for d in render.get("databases", [])]
    assert len(names) == len(set(names)), "service and database names must be unique"
    by_type: dict[str, list[dict]] = {}
    for service in services:
        by_type.setdefault(service["type"], []).append(service)

    (web,) = by_type["web"]
    assert web["healthCheckPath"] == "/healthz"
    commands = [s.get("dockerCommand", "") for s in by_type["worker"]]
    assert any("manage.py run_detection" in c and "--mode" not in c for c in commands), commands
    assert any("manage.py run_alerts" in c for c in commands), commands
    for service in [web, *by_type["worker"]]:
        assert service["runtime"] == "docker"
        assert (ROOT / service.get("dockerfilePath", "./Dockerfile")).is_file()
    assert by_type.get("keyvalue") or by_type.get("redis"), "a Key Value (Redis) service is required"
    assert render["databases"], "a PostgreSQL database is required"


def test_render_env_wiring(render):
    services = {s["name"]: s for s in render["services"]}
    databases = {d["name"] for d in render["databases"]}
    groups = {g["name"]: g["envVars"] for g in render.get("envVarGroups", [])}
    known = settings_names() | DEPLOY_ONLY
    for service in services.values():
        if service["type"] not in ("web", "worker"):
            continue
        env = render_env(service, groups)
        assert set(env) <= known, f"{service['name']}: unknown variables {sorted(set(env) - known)}"
        assert env["SECRET_KEY"].get("generateValue") is True
        assert str(env["DEBUG"]["value"]).lower() == "false"
        for key in ("ALLOWED_HOSTS", "CSRF_TRUSTED_ORIGINS"):
            assert env[key].get("value"), f"{service['name']}: {key}"
        database = env["DATABASE_URL"]["fromDatabase"]
        assert database["name"] in databases and database["property"] == "connectionString"
        source = env["REDIS_URL"]["fromService"]
        assert source["property"] == "connectionString"
        assert services[source["name"]]["type"] == source["type"] and source["type"] in ("keyvalue", "redis")
    # generateValue in a service's own envVars would give each service a different key.
    for service in services.values():
        own = {e.get("key") for e in service.get("envVars", [])}
        assert "SECRET_KEY" not in own, "SECRET_KEY belongs in the shared env group"


# Field names of Render's Blueprint spec (https://render.com/docs/blueprint-spec, JSON Schema at
# https://render.com/schema/render.yaml.json), for what this blueprint uses: web services, workers, Key Value and
# PostgreSQL. Render refuses a blueprint with any other field.
RENDER_ROOT_FIELDS = {"services", "databases", "envVarGroups", "previews", "projects", "ungrouped", "version"}
RENDER_SERVER_FIELDS = {
    *("type", "name", "region", "plan", "runtime", "repo", "branch", "image", "rootDir", "dockerCommand"),
    *("dockerContext", "dockerfilePath", "numInstances", "healthCheckPath", "scaling", "buildCommand"),
    *("startCommand", "preDeployCommand", "registryCredential", "domain", "domains", "envVars", "autoDeploy"),
    *("autoDeployTrigger", "initialDeployHook", "disk", "buildFilter", "previews", "maintenanceMode"),
    *("maxShutdownDelaySeconds", "ipAllowList", "renderSubdomainPolicy"),
}
RENDER_KEYVALUE_FIELDS = {"type", "name", "region", "ipAllowList", "plan", "previewPlan", "maxmemoryPolicy"}
RENDER_DATABASE_FIELDS = {
    *("name", "databaseName", "user", "region", "plan", "diskSizeGB", "storageAutoscalingEnabled"),
    *("connectionPool", "previewPlan", "previewDiskSizeGB", "postgresMajorVersion", "highAvailability"),
    *("ipAllowList", "readReplicas"),
}
RENDER_REGIONS = {"oregon", "ohio", "virginia", "frankfurt", "singapore"}


def test_render_fields_are_blueprint_fields(render):
    assert set(render) <= RENDER_ROOT_FIELDS, set(render) - RENDER_ROOT_FIELDS
    for service in render["services"]:
        fields = RENDER_KEYVALUE_FIELDS if service["type"] in ("keyvalue", "redis") else RENDER_SERVER_FIELDS
        assert set(service) <= fields, f"{service['name']}: {sorted(set(service) - fields)}"
        assert service.get("region", "oregon") in RENDER_REGIONS
        if service["type"] in ("keyvalue", "redis"):
            assert "ipAllowList" in service, "Key Value requires ipAllowList"
        for entry in service.get("envVars", []):
            source = set(entry) & {"value", "generateValue", "sync", "fromDatabase", "fromService", "fromGroup"}
            assert len(source) == 1 and ("key" in entry) != ("fromGroup" in entry), entry
    for database in render.get("databases", []):
        assert set(database) <= RENDER_DATABASE_FIELDS, f"{database['name']}: {set(database) - RENDER_DATABASE_FIELDS}"
        assert isinstance(database.get("postgresMajorVersion", ""), str), "postgresMajorVersion is a string"
    for group in render.get("envVarGroups", []):
        assert set(group) == {"name", "envVars"}
        for entry in group["envVars"]:
            # sync: false is ignored in a group (Render: only a service's own envVars prompt for a value).
            assert set(entry) <= {"key", "value", "generateValue", "previewValue"} and "key" in entry, entry


def test_render_metrics_need_a_token(render):
    """The web service is public on Render, so its /metrics (workers, cameras, spool depth) must ask for a token.

    An empty METRICS_TOKEN leaves /metrics open to anyone (settings.py: set it when the site is reachable from
    outside the monitoring network). The token is a secret: generated by Render, never a value in the file.
    """
    groups = {g["name"]: g["envVars"] for g in render.get("envVarGroups", [])}
    (web,) = [s for s in render["services"] if s["type"] == "web"]
    token = render_env(web, groups).get("METRICS_TOKEN")
    assert token, "render.yaml leaves the public web service's /metrics open: set METRICS_TOKEN"
    assert token.get("generateValue") is True and "value" not in token, token


def settings_backed_options(command_module: str) -> dict[str, str]:
    """`--option: SETTING` for each option of a management command whose default is read from settings."""
    tree = ast.parse(read(command_module))
    options = {}
    for call in ast.walk(tree):
        if not (isinstance(call, ast.Call) and getattr(call.func, "attr", None) == "add_argument"):
            continue
        flags = [a.value for a in call.args if isinstance(a, ast.Constant) and str(a.value).startswith("--")]
        default = next((k.value for k in call.keywords if k.arg == "default"), None)
        if flags and isinstance(default, ast.Attribute) and getattr(default.value, "id", None) == "settings":
            options.update(dict.fromkeys(flags, default.attr))
    return options


def test_worker_commands_leave_settings_to_the_environment(compose, render):
    """A deployed command passes no option whose default is a setting: the option would silently win over it.

    `run_detection --interval 5` made DETECTION_INTERVAL in .env, the compose environment or Render's environment
    group do nothing: the worker kept sampling every 5 s whatever it said.
    """
    options = settings_backed_options("detection/management/commands/run_detection.py")
    assert {"--interval", "--model", "--device", "--spool-dir"} <= set(options), options
    commands = [
        ("docker-compose.yml worker", command_text(compose["services"]["worker"]["command"])),
        *((f"render.yaml {s['name']}", s.get("dockerCommand", "")) for s in render["services"]),
        ("scripts/run", "\n".join(line for line in read("scripts/run").splitlines() if "run_detection" in line)),
    ]
    checked = 0
    for where, command in commands:
        if "run_detection" not in command:
            continue
        checked += 1
        passed = [word.split("=", 1)[0] for word in shlex.split(command) if word.startswith("--")]
        shadowed = {flag: options[flag] for flag in passed if flag in options}
        assert not shadowed, f"{where}: {shadowed} override the settings read from the environment"
    assert checked == 3, "expected run_detection in docker-compose.yml, render.yaml and scripts/run"


# --- .github/workflows/ci.yml ------------------------------------------------------------------------------


def test_ci_workflow():
    workflow = load_yaml(".github/workflows/ci.yml")
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert {"push", "pull_request"} <= set(triggers)
    (job,) = workflow["jobs"].values()
    assert job["runs-on"] == "ubuntu-latest"
    assert job["services"]["postgres"]["image"] == "postgres:16"
    assert job["services"]["redis"]["image"] == "redis:7"
    assert "5432:5432" in job["services"]["postgres"]["ports"]
    assert "6379:6379" in job["services"]["redis"]["ports"]
    env = job["env"]
    assert env["DATABASE_URL"].startswith("postgres://") and "localhost:5432" in env["DATABASE_URL"]
    assert env["REDIS_URL"].startswith("redis://localhost:6379")
    assert env["DETECTION_MODEL"] == "yolov8n.pt"
    steps = job["steps"]
    setup = next(s for s in steps if str(s.get("uses", "")).startswith("actions/setup-python"))
    assert str(setup["with"]["python-version"]) == "3.11" and setup["with"]["cache"] == "pip"
    runs = "\n".join(s.get("run", "") for s in steps)
    assert "playwright install --with-deps chromium" in runs and "CHROMIUM_PATH" in runs
    assert "./scripts/test" in runs


# --- Dockerfile and entrypoint -----------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", "", "\n".join(line for line in read("Dockerfile").splitlines() if not line.startswith("#")))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in text.splitlines() if line.strip()]


def dockerfile(instruction: str) -> list[str]:
    return [args for name, args in dockerfile_instructions() if name == instruction]


def web_command() -> str:
    (cmd,) = dockerfile("CMD")
    argv = json.loads(cmd)
    assert argv[:2] == ["sh", "-c"], "CMD runs through sh -c so ${PORT}/${WEB_CONCURRENCY} expand"
    return argv[2]


def test_dockerfile_basics():
    assert dockerfile("FROM") == ["python:3.11-slim-bookworm"]
    assert dockerfile("EXPOSE") == ["8000"]
    (user,) = dockerfile("USER")
    assert user not in ("root", "0")
    runs = "\n".join(dockerfile("RUN"))
    assert "libgl1" in runs and "libglib2.0-0" in runs
    assert "pip install --no-cache-dir" in runs and "-r requirements.txt" in runs and "--extra-index-url" in runs
    assert re.search(r"SECRET_KEY=build-only-not-secret\b.*manage\.py collectstatic --noinput", runs)
    assert any(a.startswith("TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu") for a in dockerfile("ARG"))
    command = web_command()
    for part in ("exec gunicorn", "--bind 0.0.0.0:${PORT:-8000}", "--workers ${WEB_CONCURRENCY:-2}"):
        assert part in command


def test_dockerfile_healthcheck_is_valid_python():
    (healthcheck,) = dockerfile("HEALTHCHECK")
    match = re.search(r'CMD python -c "(.*)"\s*$', healthcheck)
    assert match, healthcheck
    code = match.group(1)
    assert "/healthz" in code
    compile(code, "HEALTHCHECK", "exec")


def test_entrypoint_migrates_on_request_then_execs():
    (entrypoint,) = dockerfile("ENTRYPOINT")
    path = json.loads(entrypoint)[0]
    assert path == "/app/docker/entrypoint.sh"
    script = read("docker/entrypoint.sh")
    assert script.startswith("#!/bin/sh")
    assert "RUN_MIGRATIONS" in script and "python manage.py migrate --noinput" in script
    assert script.rstrip().endswith('exec "$@"')
    subprocess.run(["sh", "-n", str(ROOT / "docker/entrypoint.sh")], check=True)


# Where weights land in a checkout: ./models (mounted by docker-compose.yml), yolov8n.pt wherever ultralytics was run
# (it downloads into the working directory), an OpenVINO export beside its .pt, density weights (DENSITY_MODEL).
WEIGHT_PATHS = [
    "yolov8n.pt",
    "models/yolov8n.pt",
    "models/sanet_shb/sanet_shb_keras_layout.npz",
    "bench/yolov8n.pt",
    "detection/weights/best.pt",
    "yolov8n_openvino_model/yolov8n.xml",
    "bench/yolov8n_int8_openvino_model/yolov8n.bin",
    "sanet_shb_keras_layout.npz",
    "weights/mcnn_shtechB.npz",
    "exports/yolov8n.onnx",
]


def dockerignored(path: str) -> bool:
    """Whether `docker build` leaves `path` (relative to the context) out, per .dockerignore's rules: patterns
    anchored at the context root, `*` within one path segment, `**` across any number, later lines (and `!`
    exceptions) winning, and a path left out with any folder above it."""
    excluded = False
    for line in read(".dockerignore").splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = os.path.normpath(pattern.lstrip("!")).lstrip("/")
        regex = ""
        for token in re.findall(r"\*\*/|\*\*|\*|\?|\[[^]]*\]|[^*?[]+", pattern):
            wildcard = {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(token)
            regex += wildcard or (token if token.startswith("[") else re.escape(token))
        parts = path.split("/")
        if any(re.fullmatch(regex, "/".join(parts[:i])) for i in range(1, len(parts) + 1)):
            excluded = not negate
    return excluded


def test_no_model_weights_in_the_image():
    """Weights stay out of the image wherever they sit in the checkout (they are mounted or downloaded at run
    time), while everything the image runs is kept."""
    assert not dockerignored("static/css/app.css") and not dockerignored("docker/entrypoint.sh")
    for kept in ("manage.py", "requirements.txt", ".env.example", "static/vendor/leaflet/images/marker-icon.png"):
        assert not dockerignored(kept), kept
    for ignored in (
        ".env",
        "db.sqlite3",
        "var/spool/worker.sqlite3",
        "node_modules/x/index.js",
        "alerts/__pycache__/models.cpython-311.pyc",
    ):
        assert dockerignored(ignored), ignored
    copied = [path for path in WEIGHT_PATHS if not dockerignored(path)]
    assert not copied, f"docker build would copy these weights into the image: {copied}"


def test_no_model_weights_in_git():
    if subprocess.run(["git", "rev-parse", "--is-inside-work-tree"], cwd=ROOT, capture_output=True).returncode:
        pytest.skip("not a git checkout")
    tracked = [
        path
        for path in WEIGHT_PATHS
        if subprocess.run(["git", "check-ignore", "-q", "--no-index", path], cwd=ROOT).returncode
    ]
    assert not tracked, f"git would offer to commit these weights: {tracked}"


def test_asgi_application_resolves():
    """The module:attribute gunicorn serves imports and is callable (in a fresh interpreter)."""
    target = re.search(r"gunicorn\s+([\w.]+):(\w+)", web_command())
    assert target and target.groups() == ("crowd_monitor.asgi", "application")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "crowd_monitor.settings", "DEBUG": "False"}
    env.setdefault("SECRET_KEY", "test-only-not-secret")
    code = (
        f"import importlib; app = getattr(importlib.import_module({target[1]!r}), {target[2]!r}); assert callable(app)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stderr[-3000:]


def test_gunicorn_worker_class_resolves():
    match = re.search(r"(?:-k|--worker-class)\s+([\w.]+)", web_command())
    assert match, "CMD must name the gunicorn worker class"
    module_name, _, class_name = match.group(1).rpartition(".")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # uvicorn.workers is deprecated in favour of this
        module = importlib.import_module(module_name)
    worker_class = getattr(module, class_name)
    from gunicorn.workers.base import Worker

    assert issubclass(worker_class, Worker)
    if module_name.startswith("uvicorn_worker"):
        requirements = read("requirements.txt")
        assert re.search(r"^uvicorn-worker\b", requirements, flags=re.MULTILINE | re.IGNORECASE), (
            "requirements.txt must list uvicorn-worker"
        )


def test_production_server_does_not_compress_websocket_messages():
    """The web image's server refuses per-message deflate, which a browser offers on every WebSocket."""
    import asyncio
    import socket
    import threading

    import uvicorn
    from websockets.sync.client import connect

    worker_class = importlib.import_module("crowd_monitor.asgi_worker").CrowdMonitorUvicornWorker
    assert worker_class.__name__ in web_command()

    async def app(scope, receive, send):
        if scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.send", "text": "hello " * 100})
            await receive()

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", **worker_class.CONFIG_KWARGS)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=asyncio.run, args=(server.serve(),), daemon=True)
    thread.start()
    try:
        for _ in range(100):
            if server.started:
                break
            threading.Event().wait(0.05)
        with connect(f"ws://127.0.0.1:{port}/", compression="deflate", proxy=None) as ws:
            assert ws.recv(timeout=5) == "hello " * 100
            assert "Sec-WebSocket-Extensions" not in ws.response.headers
    finally:
        server.should_exit = True
        thread.join(10)
