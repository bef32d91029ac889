"""``make run``'s script (scripts/run.sh) in a pseudo-terminal, as a person runs it: once
Genie answers it prints one line, "Genie is running at http://…", and nothing else; Ctrl+C
and a closed terminal (a hang-up) stop every process it started, without a traceback or
an error line, also after the local model (llama.cpp) was loaded in the worker and its
vocabulary in the server."""

from __future__ import annotations

import contextlib
import errno
import os
import pty
import select
import signal
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from chat.models import Agent
from genie.models import AccessToken
from genie.services import create_access_token
from runs.models import Run
from tests.factories import AgentFactory, MemberFactory
from tests.processes import ROOT, free_port, wait_for

pytestmark = [pytest.mark.live, pytest.mark.model]

READY = "Genie is running at http://"


class Terminal:
    """``bash scripts/run.sh <port>`` as a terminal's job: the session leader of a new
    pseudo-terminal and its foreground process group (Ctrl+C reaches it as a person's)."""

    def __init__(self, env: dict[str, str], port: int, *, below_a_shell: bool = False) -> None:
        command = ["bash", "scripts/run.sh", str(port)]
        if below_a_shell:  # the session's leader is a shell that waits for run.sh (as make does)
            command = ["bash", "-c", f"bash scripts/run.sh {port}; exit $?"]
        pid, fd = pty.fork()
        if pid == 0:  # the child: becomes the command
            try:
                os.chdir(ROOT)
                os.execvpe("bash", command, env)  # noqa: S606 (as a terminal runs it)
            finally:
                os._exit(127)
        self.pid, self.fd, self.output, self.status = pid, fd, b"", None

    @property
    def text(self) -> str:
        return self.output.decode(errors="replace").replace("\r\n", "\n")

    def read(self, timeout: float) -> bool:
        """Read what is there within ``timeout``; False at the end of the output."""
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return True
        try:
            chunk = os.read(self.fd, 65536)
        except OSError as exc:  # every writer is gone (EIO)
            if exc.errno != errno.EIO:
                raise
            return False
        self.output += chunk
        return bool(chunk)

    def read_until(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.text:
            assert time.monotonic() < deadline, f"no {text!r} in:\n{self.text}"
            assert self.read(0.2), f"the output ended without {text!r}:\n{self.text}"

    def read_to_end(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.read(0.2):
            assert time.monotonic() < deadline, f"the output did not end:\n{self.text}"

    def press_ctrl_c(self) -> None:
        os.write(self.fd, b"\x03")

    def hang_up(self) -> None:
        os.close(self.fd)
        self.fd = -1

    def wait(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while self.status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)
            else:
                assert time.monotonic() < deadline, f"run.sh did not exit:\n{self.text}"
                time.sleep(0.1)
        return self.status

    def kill(self) -> None:
        """Tidy up after a failed test: the script and whatever it started."""
        for pid in [self.pid, *descendants(self.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.status is None:
            os.waitpid(self.pid, 0)
        if self.fd >= 0:
            os.close(self.fd)


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (children, their children…), from /proc, but the
    script's own ``sleep`` between two looks at its processes."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            command, rest = stat.split(" (", 1)[1].rsplit(")", 1)
            if command != "sleep":
                parents[int(entry.name)] = int(rest.split()[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def all_started(pid: int) -> set[int]:
    """The script's processes once all are up: the worker, its embedded beat, the server."""
    wait_for(lambda: len(descendants(pid)) >= 3, 120, "the worker, its beat and the server")
    return descendants(pid)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture
def terminal(live_env, tmp_path):
    """Start run.sh on a free port, on the test database and Redis but with Genie's own
    timings (not the live stack's short leases: the first local turn loads the model); its
    tasks on a queue of its own (the suite's worker reads the default one), its beat
    schedule in a temporary folder."""
    env = {
        **os.environ,
        **{name: live_env[name] for name in ("DATABASE_URL", "REDIS_URL", "GENIE_MEDIA_ROOT", "GENIE_EGRESS_ALLOW")},
        "DJANGO_SETTINGS_MODULE": "genie.settings",
        "VENV": str(Path(sys.executable).parent.parent),
        "GENIE_TASK_QUEUE": f"run-script-{uuid.uuid4().hex[:8]}",
        "GENIE_BEAT_SCHEDULE": str(tmp_path / "celerybeat-schedule"),
        "GENIE_WORKER_CONCURRENCY": "2",
        "TERM": "xterm",
    }
    env.pop("GENIE_LOG_LEVEL", None)
    env.pop("DEBUG", None)
    started: list[Terminal] = []

    def start(*, below_a_shell: bool = False) -> tuple[Terminal, str]:
        port = free_port()
        term = Terminal(env, port, below_a_shell=below_a_shell)
        started.append(term)
        term.read_until(READY, 180)
        term.read_until(READY + term.text.split(READY, 1)[1].split("\n", 1)[0] + "\n", 10)  # the whole line
        return term, f"http://127.0.0.1:{port}"

    yield start
    for term in started:
        if term.status is None:
            term.kill()


def local_turn(base_url: str) -> None:
    """A turn of a local agent (the worker loads the model) and its context usage (the
    server loads the model's vocabulary)."""
    member = MemberFactory()
    _, key = create_access_token(team=member.team, kind=AccessToken.Kind.PERSONAL, user=member.user)
    agent: Agent = AgentFactory(team=member.team, is_default=True, provider="local", model="SmolLM2-135M-Instruct")
    agent.max_tokens = 8
    agent.save()
    headers = {"Authorization": f"Bearer {key}"}
    created = httpx.post(f"{base_url}/api/v1/sessions", json={"text": "Say hi.", "title": "Hi"}, headers=headers)
    assert created.status_code == 201, created.text
    wait_for(lambda: Run.objects.get(uuid=created.json()["run_uuid"]).is_finished, 180, "the local turn")
    assert Run.objects.get(uuid=created.json()["run_uuid"]).status == Run.Status.SUCCEEDED
    usage = httpx.get(f"{base_url}/api/v1/sessions/{created.json()['uuid']}/context-usage", headers=headers)
    assert usage.status_code == 200, usage.text


def assert_quiet(text: str) -> None:
    lines = [line for line in text.splitlines() if line.strip()]
    assert not [line for line in lines if any(word in line for word in ("Traceback", "Error", "ERROR", "rror:"))], text


def test_ctrl_c_stops_every_process_quietly_after_the_local_model_ran(terminal, transactional_db):
    term, base_url = terminal()
    ready_output = term.text
    local_turn(base_url)
    started = all_started(term.pid)

    term.press_ctrl_c()
    term.read_to_end(120)
    status = term.wait(30)

    assert [line for line in ready_output.splitlines() if line.strip()] == [
        f"Genie is running at {base_url}/ - open it in a browser: the first visit creates the first account, "
        "later ones sign in. Ctrl+C stops Genie."
    ]
    assert status == 0, term.text
    assert_quiet(term.text)
    assert "Llama" not in term.text
    assert [pid for pid in started if alive(pid)] == []


@pytest.mark.parametrize(
    "below_a_shell",
    [
        pytest.param(False, id="run.sh leads the session: the hang-up's SIGHUP reaches it"),
        pytest.param(True, id="make (here a shell) leads it: only the terminal's loss reaches run.sh"),
    ],
)
def test_a_closed_terminal_stops_every_process(terminal, transactional_db, below_a_shell):
    term, _ = terminal(below_a_shell=below_a_shell)
    started = all_started(term.pid)

    term.hang_up()
    term.wait(120)

    wait_for(lambda: not any(alive(pid) for pid in started), 60, "every process to stop")
    assert [pid for pid in started if alive(pid)] == []


def test_a_worker_killed_9_leaves_no_beat_behind(terminal, transactional_db):
    # Issue 26, finding 5: the embedded beat (the worker's child) outlived a kill -9 of the worker.
    term, _ = terminal()
    started = all_started(term.pid)
    (worker,) = [
        pid for pid in started if b"celery" in Path(f"/proc/{pid}/cmdline").read_bytes() and pid in children(term.pid)
    ]
    wait_for(lambda: bool(descendants(worker)), 60, "the worker's beat")  # it forks its beat once up
    started |= descendants(worker)

    os.kill(worker, signal.SIGKILL)
    term.read_to_end(120)

    assert term.wait(30) == 1
    assert "Genie stopped: a process of it exited" in term.text
    wait_for(lambda: not any(alive(pid) for pid in started), 60, "every process to stop")
    assert [pid for pid in started if alive(pid)] == []


def children(pid: int) -> set[int]:
    return {
        child
        for child in descendants(pid)
        if Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[1] == str(pid)
    }
