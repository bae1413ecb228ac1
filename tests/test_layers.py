"""The import graph points down only (DESIGN.md's layers), and no package reaches into another's private names.

Read from the source with `ast`, so a violation anywhere fails here, not only in code a test happens to run.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("checkpoints_manifest", "data_index", "training", "zoo")
ZOO_JOBS = ("hub", "launch", "replay", "hf", "analysis", "cli")
_LOWER = {"checkpoints_manifest", "data_index", "training"}

# unit -> the units it may import (besides itself). `zoo` is the facade package's own __init__.
ALLOWED = {
    "checkpoints_manifest": set(),
    "data_index": {"checkpoints_manifest"},
    "training": {"checkpoints_manifest", "data_index"},
    "zoo.hub": _LOWER,
    "zoo.launch": _LOWER,
    "zoo.replay": _LOWER | {"zoo.hub"},
    "zoo.hf": _LOWER | {"zoo.hub"},
    "zoo.analysis": _LOWER | {"zoo.hub", "zoo.replay", "zoo.hf"},
    "zoo.cli": _LOWER | {"zoo.hub", "zoo.launch", "zoo.replay", "zoo.hf", "zoo.analysis"},
    "zoo": _LOWER | {"zoo.hub", "zoo.launch", "zoo.replay", "zoo.hf", "zoo.analysis"},
}


def _unit(module: str) -> str | None:
    """The layer unit a dotted module name belongs to, or None for a module not of this project."""
    parts = module.split(".")
    if parts[0] not in PACKAGES:
        return None
    if parts[0] == "zoo" and len(parts) > 1 and parts[1] in ZOO_JOBS:
        return f"zoo.{parts[1]}"
    return parts[0]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[str, str | None, int]]:
    """(module imported, name imported from it or None, line) for every import in `path`."""
    here = _module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(alias.name, None, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                # `from zoo import hub` imports the package zoo.hub: count it as that unit
                submodule = f"{base}.{alias.name}"
                if _unit(submodule) != _unit(base) or base in PACKAGES and alias.name in ZOO_JOBS:
                    found.append((submodule, None, node.lineno))
                else:
                    found.append((base, alias.name, node.lineno))
    return found


def _sources() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def test_every_import_points_down_the_layers() -> None:
    violations = []
    for path in _sources():
        unit = _unit(_module_name(path))
        for module, _, line in _imports(path):
            target = _unit(module)
            if target is not None and target != unit and target not in ALLOWED[unit]:
                violations.append(f"{path.relative_to(ROOT)}:{line} ({unit}) imports {module} ({target})")
    assert not violations, "imports against the layers:\n" + "\n".join(violations)


def test_no_package_imports_another_packages_private_names() -> None:
    violations = []
    for path in _sources():
        unit = _unit(_module_name(path))
        for module, name, line in _imports(path):
            if _unit(module) in (None, unit):
                continue
            private = [part for part in [*module.split("."), name or ""] if part.startswith("_")
                       and not part.startswith("__")]
            if private:
                violations.append(f"{path.relative_to(ROOT)}:{line} imports private {module}"
                                  f"{'.' + name if name else ''}")
    assert not violations, "private names used across packages:\n" + "\n".join(violations)


def test_the_checker_sees_a_violation() -> None:
    """Guard against a checker that passes because it finds no imports at all."""
    edges = {(_unit(_module_name(p)), _unit(m)) for p in _sources() for m, _, _ in _imports(p)}
    assert ("zoo.replay", "zoo.hub") in edges and ("training", "data_index") in edges
    assert "zoo.cli" not in ALLOWED["zoo"] and all("zoo.cli" not in allowed for allowed in ALLOWED.values())
