"""The audit app is the lower layer: it imports nothing from the consortium project."""

from __future__ import annotations

import ast
from pathlib import Path

AUDIT = Path(__file__).resolve().parents[2] / "audit"


def _imported_modules(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def test_no_module_of_the_audit_app_imports_from_consortium() -> None:
    offenders = [
        f"{path.relative_to(AUDIT.parent)}:{line} imports {module}"
        for path in sorted(AUDIT.rglob("*.py"))
        for line, module in _imported_modules(path)
        if module == "consortium" or module.startswith("consortium.")
    ]
    assert offenders == []


def test_the_layering_check_sees_imports_inside_functions(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from consortium.rounds.models import Round\n")
    assert _imported_modules(module) == [(2, "consortium.rounds.models")]
