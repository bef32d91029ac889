"""The embedded default (SQLite under var/) works from a fresh clone, where var/ is missing."""

from __future__ import annotations

import os

from tests.processes import run_python


def test_migrate_creates_the_sqlite_file_and_its_folder(tmp_path):
    target = tmp_path / "fresh-clone" / "var" / "genie.sqlite3"
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{target}"}

    done = run_python("manage.py", "migrate", "--no-input", "-v0", env=env, timeout=180)

    assert done.returncode == 0, done.stderr[-2000:]
    assert target.exists()
