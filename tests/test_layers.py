"""The house's one-way layers (README, Layout): no module imports from a layer above its own, and no file in
src/genlab grows past 500 lines. Read from the source with ast, so a lazy import inside a function counts too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "genlab"

# Lowest first; a module may import its own layer and those below. "genlab" is the package's __init__ (the
# lazy public API), which only the top layer and the package itself may reach.
LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"errors", "image_files", "progress", "registry", "device", "sampling"}),
    frozenset({"config", "preset_files", "checkpoint_files", "data"}),
    frozenset({"models"}),
    frozenset({"training"}),
    frozenset({"eval", "viz"}),
    frozenset({"bench", "studio", "api", "cli", "judge", "__main__", "genlab"}),
)


def layer_of(unit: str) -> int:
    for index, members in enumerate(LAYERS):
        if unit in members:
            return index
    raise AssertionError(f"genlab.{unit} is in no layer of tests/test_layers.py: place it in LAYERS")


def unit_of(module: str) -> str:
    """genlab.models.gan -> models; genlab.cli -> cli; genlab -> genlab."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "genlab"


def is_submodule(name: str) -> bool:
    return (PACKAGE / f"{name}.py").is_file() or (PACKAGE / name / "__init__.py").is_file()


def imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and (
                node.module == "genlab" or node.module.startswith("genlab.")):
            if node.module == "genlab":  # from genlab import registry: the submodule; __version__: the package
                found.update(f"genlab.{alias.name}" if is_submodule(alias.name) else "genlab" for alias in node.names)
            else:
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name == "genlab" or a.name.startswith("genlab."))
    return found


def source_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def module_name(path: Path) -> str:
    parts = ("genlab",) + path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@pytest.mark.parametrize("path", source_files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_from_a_layer_above_its_own(path):
    own = unit_of(module_name(path))
    upward = sorted(m for m in imported_modules(path) if layer_of(unit_of(m)) > layer_of(own))
    assert not upward, f"{path.relative_to(PACKAGE)} (layer of {own}) imports upward: {upward}"


def test_the_layer_check_sees_lazy_and_package_imports(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from genlab.cli import main\n    from genlab import registry, __version__\n")
    assert imported_modules(module) == {"genlab.cli", "genlab.registry", "genlab"}
    assert layer_of(unit_of("genlab.cli")) > layer_of(unit_of("genlab.models.gan"))


def test_no_source_file_is_over_500_lines():
    long = {str(p.relative_to(PACKAGE)): n for p in source_files()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 500}
    assert not long, f"split these along their seams: {long}"
