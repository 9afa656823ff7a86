"""`scripts/run`, the README's one command that runs the product, on a copy of this checkout with the embedded
defaults (no DATABASE_URL / REDIS_URL: SQLite and the in-memory channel layer) and the real YOLO model."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings

from tests.conftest import _free_port

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"

pytestmark = pytest.mark.skipif(
    not Path(settings.DETECTION_MODEL).exists() or not (REPO / ".git").exists() or not (REPO / ".venv").is_dir(),
    reason="needs local YOLO weights (DETECTION_MODEL), a git checkout and its .venv (scripts/test makes it)",
)


def checkout_copy(target: Path) -> Path:
    """The tracked files as a clean clone has them (mtimes kept, so the install stamps stay current) and this
    checkout's .venv; ../shared beside it, as beside the repository, when there is one."""
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    copy = target / "crowd-monitor"
    for name in filter(None, tracked.decode().split("\0")):
        if (REPO / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, copy / name)
    (copy / ".venv").symlink_to(REPO / ".venv")
    if SHARED.is_dir():
        (target / "shared").symlink_to(SHARED)
    return copy


def get_json(url: str, token: str = "", body: dict | None = None) -> dict:
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Token {token}"} if token else {})
    data = json.dumps(body).encode() if body is not None else None
    with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers), timeout=10) as response:
        return json.loads(response.read())


def test_scripts_run_starts_the_product_and_counts_people(tmp_path: Path) -> None:
    copy = checkout_copy(tmp_path)
    port = _free_port("127.0.0.1")
    url = f"http://127.0.0.1:{port}"
    # Nothing of the test session's own settings: what a person typing the README's command has.
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "PORT": str(port), "DETECTION_INTERVAL": "1"}
    env["DETECTION_MODEL"] = str(settings.DETECTION_MODEL)
    log = tmp_path / "run.log"
    with log.open("w") as output:  # a log file, not a terminal: everything must still land in it, in order
        process = subprocess.Popen(
            ["scripts/run"], cwd=copy, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        login = walkway = None
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and process.poll() is None:
            time.sleep(1)
            found = re.search(r"Log in as: demo / (\S+)", log.read_text(errors="replace"))
            if not found:
                continue
            try:
                token = get_json(f"{url}/api/auth/token/", body={"username": "demo", "password": found[1]})["token"]
                locations = get_json(f"{url}/api/locations/", token)["results"]
            except (urllib.error.URLError, ConnectionError):
                continue  # the server is still starting
            login = found[1]
            walkway = next(loc for loc in locations if loc["name"] == "Campus Walkway")
            if walkway["current_count"] is not None:
                break
        assert process.poll() is None, f"scripts/run exited with {process.returncode}:\n{log.read_text()}"
        assert login, f"no demo login in time:\n{log.read_text()}"
        assert walkway and walkway["current_count"] > 0, f"no reading stored in time: {walkway}\n{log.read_text()}"
        assert walkway["density_level"] in ("LOW", "MEDIUM", "HIGH"), walkway
        with urllib.request.urlopen(f"{url}/readyz", timeout=10) as response:
            assert response.status == 200
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)  # Ctrl+C, as the script tells its user
        process.wait(timeout=60)
    text = log.read_text(errors="replace")
    # The script stops its web server and workers with it, and the log keeps every step from the first line.
    assert subprocess.run(["pgrep", "-s", str(process.pid)], capture_output=True).stdout == b"", "left running"
    assert "\0" not in text, "part of the log was overwritten"
    assert text.index("Applying") < text.index("Demo login: demo") < text.index("Crowd Monitor is running at")
    assert (copy / "db.sqlite3").is_file() and (copy / ".env").is_file()
