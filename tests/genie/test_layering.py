"""The layering rules of docs/architecture.md, held on the code: which app may import which.

Every ``import`` and ``from … import`` in an app's modules counts, at module level or inside a
function (a lazy import is still a dependency), and so does a dotted path given by name to
``include()`` or ``import_module()``; migrations and tests are left out. The floors, top down:
protocols (imported by nobody but the entry points) → feedback → chat ⇄ runs → genie.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT

APPS = ("genie", "chat", "runs", "feedback", "protocols")
# The project's entry points and wiring: they mount every app, so they may name any of them.
GENIE_WIRING = {"genie.asgi", "genie.urls", "genie.celery", "genie.settings", "genie.wsgi"}
# What runs may read of chat: its rows and its files, never its services, serializers or views.
RUNS_MAY_IMPORT_OF_CHAT = {"chat.models", "chat.files"}
# Calls that load a module given by name.
BY_NAME = {"include", "import_module"}


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, dotted
    target: str  # the imported module (or name), dotted and absolute
    where: str  # path:line, for the failure message

    @property
    def app(self) -> str:
        return self.module.split(".")[0]

    @property
    def target_app(self) -> str:
        return self.target.split(".")[0]

    def __str__(self) -> str:
        return f"{self.where}: {self.module} imports {self.target}"


def module_name(root: Path, path: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_in(root: Path, path: Path) -> Iterator[Import]:
    module = module_name(root, path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    where = str(path.relative_to(root))
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, alias.name, f"{where}:{node.lineno}")
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolved against the module's own package
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            # `from chat import models` imports chat.models: name each imported name under its source.
            for alias in node.names:
                yield Import(module, f"{source}.{alias.name}", f"{where}:{node.lineno}")
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
            if name in BY_NAME and isinstance(node.args[0].value, str):
                yield Import(module, node.args[0].value, f"{where}:{node.lineno}")


def app_imports(root: Path) -> list[Import]:
    """Every import from one app into another, migrations and tests left out."""
    found = []
    for app in APPS:
        for path in sorted((root / app).rglob("*.py")):
            parts = path.relative_to(root).parts
            if "migrations" in parts or "tests" in parts or path.name.startswith("test_"):
                continue
            found += [i for i in imports_in(root, path) if i.target_app in APPS and i.target_app != i.app]
    return found


def violations(imports: list[Import]) -> list[str]:
    broken = []
    for i in imports:
        if i.module in GENIE_WIRING:
            continue  # rule 1 and 2's exception: the entry points mount the apps
        if i.target_app == "protocols":
            broken.append(f"{i} (rule 1: nothing imports protocols, the top floor)")
        elif i.app == "genie":
            broken.append(f"{i} (rule 2: genie's foundation imports no app)")
        elif i.app == "runs" and i.target_app == "chat" and not i.target.startswith(tuple(RUNS_MAY_IMPORT_OF_CHAT)):
            broken.append(f"{i} (rule 3: runs imports only chat.models and chat.files of chat)")
        elif i.app in {"chat", "runs"} and i.target_app == "feedback":
            broken.append(f"{i} (rule 4: nothing below feedback imports it)")
    return broken


def test_the_apps_follow_the_layering_rules():
    assert violations(app_imports(ROOT)) == []


def test_the_scan_sees_the_imports_between_apps():
    """The rules above pass on something: the imports they allow are found where they are."""
    seen = {(i.module, i.target) for i in app_imports(ROOT)}

    assert ("genie.asgi", "protocols.routing.stream_routes") in seen  # the entry point mounts protocols
    assert ("genie.urls", "protocols.urls") in seen  # included by name
    assert any(module.startswith("protocols.") and target.startswith("runs.") for module, target in seen)
    assert any(module.startswith("runs.") and target.startswith("chat.models") for module, target in seen)
    assert any(module.startswith("feedback.") and target.startswith("chat.") for module, target in seen)


@pytest.mark.parametrize(
    ("module", "source", "rule"),
    [
        ("runs/sse.py", "from protocols.aisdk.views import ChatView", "rule 1"),
        ("chat/views.py", "def f():\n    import protocols.openai.views\n", "rule 1"),
        ("feedback/views.py", "from protocols import seed001", "rule 1"),
        ("genie/auth.py", "from protocols.routing import stream_routes", "rule 1"),
        ("genie/views.py", "from chat.models import Session", "rule 2"),
        ("genie/auth.py", "def f():\n    from runs.models import Run\n", "rule 2"),
        ("runs/loop.py", "from chat.services import post_message", "rule 3"),
        ("runs/services.py", "from chat import serializers", "rule 3"),
        ("chat/admin.py", "from feedback.models import Feedback", "rule 4"),
        ("runs/views.py", "from django.urls import include\nx = include('feedback.urls')", "rule 4"),
    ],
)
def test_an_import_against_the_rules_is_caught(tmp_path, module, source, rule):
    for app in APPS:
        (tmp_path / app).mkdir()
        (tmp_path / app / "__init__.py").write_text("")
    (tmp_path / module).write_text(source)
    (tmp_path / "chat" / "migrations").mkdir()
    (tmp_path / "chat" / "migrations" / "0001_initial.py").write_text("import protocols\n")  # not counted

    broken = violations(app_imports(tmp_path))

    assert len(broken) == 1
    assert module in broken[0]
    assert rule in broken[0]


def test_the_entry_points_may_mount_every_app(tmp_path):
    for app in APPS:
        (tmp_path / app).mkdir()
    (tmp_path / "genie" / "asgi.py").write_text("from protocols.routing import stream_routes\nimport runs.sse\n")
    (tmp_path / "genie" / "urls.py").write_text("include('protocols.urls')\ninclude('feedback.urls')\n")
    (tmp_path / "runs" / "loop.py").write_text("from chat.models import Message\nfrom chat.files import prompt_part\n")

    assert violations(app_imports(tmp_path)) == []
