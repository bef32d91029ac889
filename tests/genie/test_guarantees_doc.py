"""docs/guarantees.md and the README's Guarantees name the tests that hold each promise:
every test they name exists (a parametrised test's case by its id)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
# `tests/x/test_y.py::test_z` or `tests/x/test_y.py::test_z[case id]`
REFERENCE = re.compile(r"(tests/[\w/]+\.py)::(\w+)(?:\[([^\]]+)\])?")


def named_tests(document: Path) -> list[tuple[str, str, str | None]]:
    return REFERENCE.findall(document.read_text().replace("\n  ", " "))


def functions_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)}


@pytest.mark.parametrize("document", ["docs/guarantees.md", "README.md"])
def test_every_test_a_guarantee_names_exists(document):
    references = named_tests(ROOT / document)
    missing = []
    for file, name, case in references:
        path = ROOT / file
        if not path.exists() or name not in functions_in(path) or (case and f'"{case}"' not in path.read_text()):
            missing.append(f"{file}::{name}" + (f"[{case}]" if case else ""))

    assert references
    assert missing == []
