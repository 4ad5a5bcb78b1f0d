"""Import rules that keep the architecture visible (docs/architecture.md, "Import rules").

Each rule is checked on the source with ``ast``, so a broken rule fails here with the file,
the line and the rule, before anyone has to find it in review.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Which of our packages each package may import. Pure layers first.
ALLOWED: dict[str, set[str]] = {
    "he": set(),
    "models": set(),
    "protocol": {"he"},
    "governance": {"protocol", "he"},
    "audit": {"he", "protocol", "governance"},
    "consortium": {"audit", "he", "models", "protocol", "governance"},
    "bank_node": {"he", "models", "protocol", "governance"},
    "simulation": {"bank_node", "he", "models", "protocol", "governance"},
}
OURS = set(ALLOWED)
PURE = {"he", "models", "protocol", "governance"}
WEB_FRAMEWORKS = {"django", "rest_framework", "drf_spectacular", "axes", "whitenoise"}
HTTP_CLIENTS = {"requests", "httpx", "urllib3", "aiohttp", "urllib.request", "http.client"}
# The one module of the node that may speak HTTP.
NODE_HTTP_MODULE = "bank_node/portal_client.py"
# Writers of audit rows: only the audit service (and the app's migrations).
AUDIT_MODELS = {"AuditEvent", "AuditHead", "Checkpoint"}
# An unsaved AuditHead stands for "empty chain" in reads; only events and checkpoints
# are flagged when merely constructed.
AUDIT_ROWS = {"AuditEvent", "Checkpoint"}
AUDIT_WRITE_METHODS = {"create", "bulk_create", "update", "get_or_create", "update_or_create"}
AUDIT_WRITER = "audit/services.py"
DECLARATIVE_MODULES = {"serializers.py", "admin.py"}

# Function-local imports of our own packages are allowed only where a reason other than an
# import cycle makes them necessary; every entry says which.
LOCAL_IMPORT_REASONS: dict[str, str] = {
    # Django's documented place to connect signals and register checks: apps are not
    # loaded when the AppConfig module is imported.
    "audit/apps.py": "AppConfig.ready()",
    "consortium/api/apps.py": "AppConfig.ready()",
    # reportlab is loaded only when somebody asks for a PDF.
    "audit/render.py": "lazy loading of the PDF renderer",
    # torch is loaded into a portal process only when a policy is created (the vector
    # length comes from building the model spec), not by every web worker at start-up.
    "consortium/rounds/services/policies.py": "lazy loading of torch in the portal",
    # The CLI imports torch/Lightning only for the sub-commands that need them, so that
    # `bank-node --help`, `keygen` and `register` start in well under a second.
    "bank_node/cli.py": "lazy loading of the ML stack per sub-command",
    "bank_node/serve_cli.py": "lazy loading of the ML stack per sub-command (bank-node serve)",
    "bank_node/personalise_cli.py": "lazy loading of the ML stack (bank-node personalise)",
    "bank_node/train_worker_cli.py": "lazy loading of the ML stack (bank-node train-worker)",
    "bank_node/training.py": "Opacus is loaded only when a policy asks for DP",
    # gunicorn reads its config in the master before Django is set up; the validation
    # pool needs settings, so its hook imports it in the worker, after the app is loaded.
    "consortium/gunicorn.conf.py": "gunicorn hooks run before/after Django is set up",
}


@dataclass(frozen=True)
class Import:
    path: str
    line: int
    module: str
    local: bool


def _source_files() -> Iterator[Path]:
    for package in sorted(OURS):
        base = ROOT / package
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*.py")):
            if "migrations" not in path.parts:
                yield path


def _imports(path: Path, root: Path = ROOT) -> Iterator[Import]:
    rel = path.relative_to(root).as_posix()
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=rel)
    local_nodes = {
        id(node)
        for fn in ast.walk(tree)
        if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef)
        for node in ast.walk(fn)
    }
    typing_only = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and _is_type_checking(block.test)
        for node in ast.walk(block)
    }
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            yield Import(rel, node.lineno, name, id(node) in local_nodes)


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _all_imports() -> list[Import]:
    return [imp for path in _source_files() for imp in _imports(path)]


def _package(rel: str) -> str:
    return rel.split("/", 1)[0]


def _matches(module: str, names: set[str]) -> bool:
    return any(module == name or module.startswith(name + ".") for name in names)


IMPORTS = _all_imports()


def test_the_scan_sees_every_package():
    seen = {_package(imp.path) for imp in IMPORTS}
    assert {"he", "models", "consortium", "audit", "bank_node"} <= seen


@pytest.mark.parametrize("package", sorted(OURS))
def test_a_package_imports_only_the_packages_below_it(package):
    broken = [
        f"{imp.path}:{imp.line} imports {imp.module}"
        for imp in IMPORTS
        if _package(imp.path) == package
        and imp.module.split(".")[0] in OURS - {package}
        and imp.module.split(".")[0] not in ALLOWED[package]
    ]
    assert not broken, f"{package} may import only {sorted(ALLOWED[package])}:\n" + "\n".join(
        broken
    )


@pytest.mark.parametrize("package", sorted(PURE))
def test_pure_packages_import_no_web_framework_and_no_http_client(package):
    broken = [
        f"{imp.path}:{imp.line} imports {imp.module}"
        for imp in IMPORTS
        if _package(imp.path) == package and _matches(imp.module, WEB_FRAMEWORKS | HTTP_CLIENTS)
    ]
    assert not broken, "\n".join(broken)


def test_only_the_nodes_portal_client_speaks_http():
    broken = [
        f"{imp.path}:{imp.line} imports {imp.module}"
        for imp in IMPORTS
        if _package(imp.path) in {"bank_node", "consortium", "audit"}
        and imp.path != NODE_HTTP_MODULE
        and _matches(imp.module, HTTP_CLIENTS)
    ]
    assert not broken, f"only {NODE_HTTP_MODULE} may use an HTTP client:\n" + "\n".join(broken)


def test_no_function_local_imports_of_our_packages_without_a_stated_reason():
    broken = [
        f"{imp.path}:{imp.line} imports {imp.module} inside a function"
        for imp in IMPORTS
        if imp.local and imp.module.split(".")[0] in OURS and imp.path not in LOCAL_IMPORT_REASONS
    ]
    assert not broken, (
        "import at module level (a cycle means a layer is wrong), or add the file to "
        "LOCAL_IMPORT_REASONS with the reason:\n" + "\n".join(broken)
    )


def _audit_writes(path: Path, root: Path = ROOT) -> Iterator[str]:
    rel = path.relative_to(root).as_posix()
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=rel)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        # AuditEvent(...)
        if isinstance(func, ast.Name) and func.id in AUDIT_ROWS:
            yield f"{rel}:{node.lineno} constructs {func.id}"
        # AuditEvent.objects.create(...)
        if (
            isinstance(func, ast.Attribute)
            and func.attr in AUDIT_WRITE_METHODS
            and isinstance(func.value, ast.Attribute)
            and func.value.attr == "objects"
            and isinstance(func.value.value, ast.Name)
            and func.value.value.id in AUDIT_MODELS
        ):
            yield f"{rel}:{node.lineno} calls {func.value.value.id}.objects.{func.attr}"


def test_audit_rows_are_written_only_by_the_audit_service():
    broken = [
        write
        for path in _source_files()
        if path.relative_to(ROOT).as_posix() != AUDIT_WRITER
        for write in _audit_writes(path)
    ]
    assert not broken, f"write audit rows through {AUDIT_WRITER}:\n" + "\n".join(broken)


def test_outside_the_audit_app_only_declarations_import_the_audit_models():
    # Serializers and admin classes declare their model; everything else reads through
    # audit.selectors and writes through audit.services. Imports under TYPE_CHECKING are
    # annotations and are not scanned.
    broken = [
        f"{imp.path}:{imp.line} imports {imp.module}"
        for imp in IMPORTS
        if _package(imp.path) != "audit"
        and _matches(imp.module, {"audit.models"})
        and Path(imp.path).name not in DECLARATIVE_MODULES
    ]
    assert not broken, "read through audit.selectors, write through audit.services:\n" + (
        "\n".join(broken)
    )


def test_the_scanner_sees_module_and_function_local_imports_and_audit_writes(tmp_path):
    probe = tmp_path / "he" / "probe.py"
    probe.parent.mkdir()
    probe.write_text(
        "import django\n"
        "if TYPE_CHECKING:\n"
        "    import requests\n\n"
        "def f():\n"
        "    from consortium.rounds import models\n"
        "    AuditEvent.objects.create(action='x')\n"
        "    return AuditEvent(action='y')\n"
    )
    found = list(_imports(probe, root=tmp_path))
    assert any(imp.module == "django" and not imp.local for imp in found)
    assert any(imp.module == "consortium.rounds" and imp.local for imp in found)
    assert not any(imp.module == "requests" for imp in found)
    writes = list(_audit_writes(probe, root=tmp_path))
    assert writes == [
        "he/probe.py:7 calls AuditEvent.objects.create",
        "he/probe.py:8 constructs AuditEvent",
    ]
