"""Helpers for tests and benchmarks that run real processes on loopback (no Django imports)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import redis

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(check: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise TimeoutError(f"timed out waiting for {what}")


def run_python(*args: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    """``python <args>`` in the project's root, to its end, output captured. Past
    ``timeout`` its whole process group goes (SIGTERM, then SIGKILL): a bench's Daphne and
    workers left running would take the next run's tasks from the same Redis."""
    with subprocess.Popen(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except BaseException:  # the timeout, or pytest's own
            for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, sig)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(grace)
                    break
            raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


class LiveProcess:
    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.args, self.env, self.log_path = args, env, log
        self.proc: subprocess.Popen | None = None

    def start(self) -> LiveProcess:
        self.log = self.log_path.open("w")
        self.proc = subprocess.Popen(self.args, env=self.env, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT)
        return self

    def log_text(self) -> str:
        return self.log_path.read_text()

    def restart(self, ready: str) -> None:
        self.stop()
        self.start()
        wait_for(lambda: ready in self.log_text(), 60, f"{self.args[2:4]} restart")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def healthy(base_url: str) -> bool:
    try:
        return httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def start_daphne(env: dict[str, str], log: Path, *, port: int | None = None) -> tuple[LiveProcess, str]:
    """A real Daphne serving genie.asgi on ``port`` (a free one by default); returns once /healthz answers."""
    port = port or free_port()
    server = LiveProcess(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "genie.asgi:application"], env, log
    ).start()
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: healthy(url), 60, "daphne")
    return server, url


def start_worker(
    env: dict[str, str], log: Path, *, concurrency: int = 8, loglevel: str = "INFO", wait: bool = True
) -> LiveProcess:
    """A real Celery worker (threads pool); returns once it is ready (``wait``), or at once
    (``worker_ready`` tells)."""
    worker = LiveProcess(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "genie",
            "worker",
            "--pool",
            "threads",
            "--concurrency",
            str(concurrency),
            "--loglevel",
            loglevel,
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--hostname",
            f"w{uuid.uuid4().hex[:8]}@%h",
        ],
        env,
        log,
    ).start()
    if wait:
        wait_for(lambda: worker_ready(worker), 60, "celery worker")
    return worker


def worker_ready(worker: LiveProcess) -> bool:
    return "ready" in worker.log_text()


def start_beat(env: dict[str, str], folder: Path) -> LiveProcess:
    """Celery beat: it drives the sweeper (every GENIE_SWEEP_INTERVAL) and the hourly purge."""
    return LiveProcess(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "genie",
            "beat",
            "--loglevel",
            "INFO",
            "--schedule",
            str(folder / "schedule"),
        ],
        env,
        folder / "beat.log",
    ).start()


class RedisServer:
    """A redis-server of a test's own on a free port, to stop and start (empty) at will."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.folder = folder
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                shutil.which("redis-server"),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.folder),
            ],
            stdout=subprocess.DEVNULL,
        )
        wait_for(self.ping, 10, "redis-server")

    def ping(self) -> bool:
        try:
            return redis.Redis.from_url(self.url).ping()
        except redis.RedisError:
            return False

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
