"""The packages' public surfaces: every package names its exports in `__all__`, the names exist, and code in
one package does not reach into another's underscored names. Errors live in `wattwise.errors` only.

Like httpx's tests/test_exported_members.py, plus an import scan of src/ and scripts/ (tests and benchmarks may
exercise internals, e.g. empty a cache between rounds, and are not scanned).
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import pkgutil
from pathlib import Path

import pytest

import wattwise
import wattwise.errors

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "wattwise"
SCANNED = [ROOT / "src", ROOT / "scripts"]


def _packages() -> list[str]:
    names = ["wattwise"]
    for info in pkgutil.walk_packages(wattwise.__path__, "wattwise."):
        if info.ispkg:
            names.append(info.name)
    return sorted(names)


PACKAGES = _packages()


def _submodules(package: str) -> set[str]:
    module = importlib.import_module(package)
    return {info.name for info in pkgutil.iter_modules(module.__path__)}


def test_packages_are_found() -> None:
    assert {"wattwise.store", "wattwise.analysis", "wattwise.measure.scenario"} <= set(PACKAGES)


@pytest.mark.parametrize("package", PACKAGES)
def test_package_declares_its_exports(package: str) -> None:
    module = importlib.import_module(package)
    exported = getattr(module, "__all__", None)
    assert isinstance(exported, list), f"{package}/__init__.py has no __all__ list"
    assert all(isinstance(name, str) for name in exported)
    duplicates = sorted({name for name in exported if exported.count(name) > 1})
    assert not duplicates, f"{package}.__all__ names {duplicates} twice"


@pytest.mark.parametrize("package", PACKAGES)
def test_exported_names_exist(package: str) -> None:
    module = importlib.import_module(package)
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert not missing, f"{package}.__all__ names {missing}, which the package does not have"
    assert set(module.__all__) <= set(dir(module))


@pytest.mark.parametrize("package", PACKAGES)
def test_exports_do_not_shadow_submodules(package: str) -> None:
    """`from wattwise.schedule import simulate` must keep meaning the module, so no export takes its name."""
    module = importlib.import_module(package)
    clashes = sorted(set(module.__all__) & _submodules(package))
    assert not clashes, f"{package}.__all__ exports {clashes}, which are also submodule names"


def test_lazy_exports_import_on_first_use() -> None:
    import wattwise.carbon as carbon

    assert carbon.CarbonTrace is importlib.import_module("wattwise.carbon.trace").CarbonTrace
    with pytest.raises(AttributeError, match="no attribute 'NoSuchName'"):
        carbon.NoSuchName  # noqa: B018


# -- underscored names stay inside their package --------------------------------------------------------
def _module_name(path: Path) -> str | None:
    try:
        relative = path.relative_to(ROOT / "src")
    except ValueError:
        return None  # benchmarks/, scripts/: outside every package
    parts = list(relative.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_package(name: str) -> bool:
    spec = importlib.util.find_spec(name)
    return spec is not None and spec.submodule_search_locations is not None


def _owner(module: str) -> str:
    """The package a module's private names belong to: the module itself if a package, else its parent."""
    return module if _is_package(module) else module.rpartition(".")[0]


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _inside(importer: str | None, owner: str) -> bool:
    return importer is not None and (importer == owner or importer.startswith(owner + "."))


def _import_hits(path: Path, importer: str | None, tree: ast.AST, bound: dict[str, str]) -> list[str]:
    """Imports of private modules or names from outside their package; fills `bound` (local name -> module)."""
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if not alias.name.startswith("wattwise."):
                    continue
                parts = alias.name.split(".")
                for i, part in enumerate(parts[1:], 1):
                    if _private(part) and not _inside(importer, ".".join(parts[:i])):
                        found.append(f"{path}:{node.lineno}: import {alias.name}")
                if alias.asname:
                    bound[alias.asname] = alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("wattwise"):
            module = node.module or ""
            package = _is_package(module)
            for alias in node.names:
                full = f"{module}.{alias.name}"
                is_module = package and importlib.util.find_spec(full) is not None
                owner = module if package else _owner(module)
                if _private(alias.name) and not _inside(importer, owner):
                    found.append(f"{path}:{node.lineno}: from {module} import {alias.name}")
                if is_module:
                    bound[alias.asname or alias.name] = full
    return found


def _attribute_hits(path: Path, importer: str | None, tree: ast.AST, bound: dict[str, str]) -> list[str]:
    """`module._name` where `module` is a wattwise module of another package."""
    found: list[str] = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and _private(node.attr)):
            continue
        target = bound.get(node.value.id)
        if target is not None and not _inside(importer, _owner(target)):
            found.append(f"{path}:{node.lineno}: {node.value.id}.{node.attr} ({target})")
    return found


def _reach_ins(path: Path) -> list[str]:
    importer = _module_name(path)
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    bound: dict[str, str] = {}
    return _import_hits(path, importer, tree, bound) + _attribute_hits(path, importer, tree, bound)


def test_no_package_imports_another_packages_underscored_names() -> None:
    found = [hit for base in SCANNED if base.exists() for path in sorted(base.rglob("*.py")) for hit in _reach_ins(path)]
    assert not found, "private names used outside their package:\n" + "\n".join(found)


# -- one error hierarchy -------------------------------------------------------------------------------
def test_errors_module_draws_every_error_in_its_docstring() -> None:
    doc = wattwise.errors.__doc__ or ""
    undrawn = [name for name in wattwise.errors.__all__ if f"─ {name} " not in doc]
    assert not undrawn, f"wattwise.errors docstring does not draw {undrawn}"
    for name in wattwise.errors.__all__:
        cls = getattr(wattwise.errors, name)
        assert issubclass(cls, wattwise.errors.WattwiseError), name


def test_user_errors_are_defined_only_in_the_errors_module() -> None:
    """A class deriving from one of wattwise.errors' classes is itself defined there (the old homes re-export)."""
    error_names = set(wattwise.errors.__all__)
    defined_elsewhere = []
    for path in sorted(SRC.rglob("*.py")):
        if path == SRC / "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                bases = {b.id if isinstance(b, ast.Name) else b.attr if isinstance(b, ast.Attribute) else "" for b in node.bases}
                if node.name in error_names or bases & error_names:
                    defined_elsewhere.append(f"{path.relative_to(ROOT)}:{node.lineno}: class {node.name}")
    assert not defined_elsewhere, "errors defined outside wattwise/errors.py:\n" + "\n".join(defined_elsewhere)


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("wattwise.store.store", "DatabaseError"),
        ("wattwise.providers.base", "ProviderError"),
        ("wattwise.providers", "ProviderError"),
        ("wattwise.providers.ipmi", "DcmiUnavailable"),
        ("wattwise.carbon.trace", "TraceError"),
        ("wattwise.carbon.live", "IntensityError"),
        ("wattwise.measure.scenario.problems", "ScenarioError"),
        ("wattwise.measure.scenario.engine", "EngineError"),
        ("wattwise.measure.scenario.steps", "StepFailed"),
        ("wattwise.measure.scenario.steps", "RunCancelled"),
        ("wattwise.jobmodel", "ModelError"),
        ("wattwise.jobmodel.fit", "FitError"),
        ("wattwise.jobmodel.phasemap", "PhaseMapError"),
        ("wattwise.jobmodel.pinpoint", "RunError"),
        ("wattwise.jobmodel.meters", "ExperimentError"),
        ("wattwise.schedule.jobs", "JobTraceError"),
        ("wattwise.schedule.solvers", "Infeasible"),
        ("wattwise.monitor.promql", "PromQLError"),
        ("wattwise.monitor.promql", "AccessDenied"),
        ("wattwise.monitor.aggregate", "PrometheusError"),
    ],
)
def test_old_homes_re_export_the_same_error_class(module: str, name: str) -> None:
    assert getattr(importlib.import_module(module), name) is getattr(wattwise.errors, name)
