"""The product's code stays readable: no function longer than a reader can follow in one go."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("slac_runtime", "robots", "calibration", "slac_train")
MAX_FUNCTION_LINES = 80


def long_functions() -> list[str]:
    found = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    lines = node.end_lineno - node.lineno + 1
                    if lines > MAX_FUNCTION_LINES:
                        where = f"{path.relative_to(REPO)}:{node.lineno}"
                        found.append(f"{where} {node.name}: {lines} lines")
    return found


def test_no_function_is_longer_than_80_lines():
    assert long_functions() == []
