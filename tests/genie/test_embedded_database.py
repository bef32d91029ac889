"""The embedded default (SQLite under var/) works from a fresh clone, where var/ is missing."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.processes import ROOT


def test_migrate_creates_the_sqlite_file_and_its_folder(tmp_path):
    target = tmp_path / "fresh-clone" / "var" / "genie.sqlite3"
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{target}"}

    done = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--no-input", "-v0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )

    assert done.returncode == 0, done.stderr[-2000:]
    assert target.exists()
