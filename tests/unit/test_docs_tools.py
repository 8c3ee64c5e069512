"""The docs site's build helpers: tools/mkdocs_hooks.py (the generated API
reference) and tools/griffe_docstrings.py (reST habits as Markdown)."""

from __future__ import annotations

import importlib.util
import re
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest

pytest.importorskip("mkdocs")
pytest.importorskip("griffe")

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str) -> ModuleType:
    """Import tools/<name>.py by path (tools/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"_docs_{name}", ROOT / "tools" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


hooks = _load("mkdocs_hooks")
docstrings = _load("griffe_docstrings")


def _documented(pages: dict[str, str]) -> Counter[str]:
    """Every ``::: identifier`` on the pages, counted."""
    return Counter(m for text in pages.values() for m in re.findall(r"^::: (\S+)", text, re.M))


def test_every_public_name_is_documented_exactly_once() -> None:
    """Each name of the public subpackages' __all__ has its entry; each name
    of pgharbor.__all__ one, under pgharbor. or under the subpackage that
    also exports it (config, metrics, errors); no entry twice."""
    pages = hooks.reference_pages(ROOT)
    documented = _documented(pages)
    assert [key for key, n in documented.items() if n > 1] == []
    modules = ["pgharbor.config", "pgharbor.metrics", "pgharbor.testing", "pgharbor.errors"]
    for module in modules:
        for name in hooks.public_names(ROOT, module):
            assert f"{module}.{name}" in documented, (module, name)
    homes = ["pgharbor", "pgharbor.config", "pgharbor.metrics", "pgharbor.errors"]
    for name in hooks.public_names(ROOT, "pgharbor"):
        if not name.startswith("__"):
            found = [home for home in homes if f"{home}.{name}" in documented]
            assert len(found) == 1, (name, found)
    assert "reference/index.md" in pages and "reference/integrations.md" in pages


def test_a_new_public_name_lands_on_the_index(tmp_path: Path) -> None:
    """A name no area claims is listed under "Other names" on the index, so
    the reference never silently leaves one out."""
    package = tmp_path / "src" / "pgharbor"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text('__all__ = ["Pool", "BrandNew", "__version__"]\n')
    pages = hooks.reference_pages(tmp_path)
    assert "## Other names" in pages["reference/index.md"]
    assert _documented({"i": pages["reference/index.md"]}) == Counter({"pgharbor.BrandNew": 1})
    assert "::: pgharbor.Pool" in pages["reference/pools.md"]
    assert "No integration module" in pages["reference/integrations.md"]


def test_integration_modules_are_documented_when_present(tmp_path: Path) -> None:
    """An integration module of the build (here pgharbor.compat.asyncpg) gets
    its docstring and every name of its __all__ on the Integrations page."""
    compat = tmp_path / "src" / "pgharbor" / "compat"
    compat.mkdir(parents=True)
    (compat.parent / "__init__.py").write_text("__all__ = []\n")
    (compat / "asyncpg.py").write_text('"""Drop-in."""\n__all__ = ["create_pool"]\n')
    page = hooks.reference_pages(tmp_path)["reference/integrations.md"]
    assert "::: pgharbor.compat.asyncpg\n" in page
    assert "::: pgharbor.compat.asyncpg.create_pool" in page


@pytest.mark.parametrize(
    ("source", "markdown"),
    [
        ("in :class:`pgharbor.PoolOptions`.", "in `pgharbor.PoolOptions`."),
        ("see :func:`~.psycopg.get_driver`", "see `get_driver`"),
        ("like :meth:`ping`", "like `ping`"),
        ("call `open`::\n\n    with p:\n", "call `open`:\n\n    with p:\n"),
        ("Usage\n::\n\n    x = 1\n", "Usage\n\n    x = 1\n"),
        ("a::b and x[::2]", "a::b and x[::2]"),
    ],
)
def test_rest_habits_become_markdown(source: str, markdown: str) -> None:
    """reST roles become code spans (``~`` keeps the last name); a ``::``
    introducer becomes ``:``, a lone ``::`` line goes; other colons stay."""
    assert docstrings.to_markdown(source) == markdown
