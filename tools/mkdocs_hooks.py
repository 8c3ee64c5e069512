"""MkDocs hooks for the docs site (``mkdocs.yml``: ``hooks:``).

Three jobs, so that ``docs/*.md`` stay the pages a reader of the repository
sees and links in them keep working in both places:

- **Files from outside ``docs/``** (the benchmarks' README and results, the
  changelog, the examples) join the site under their repository paths.
- **Links** are written relative to the repository (``../benchmarks/RESULTS.md``
  from ``docs/pool.md``, ``../docs/schema.md`` from ``benchmarks/README.md``);
  each is rewritten to where its target sits in the site. A target that is
  neither in ``docs/`` nor brought in is left alone, and ``mkdocs build
  --strict`` fails on it.
- **The API reference** is generated from the packages' ``__all__`` (read from
  the source, nothing imported): a page per area, every public name of
  ``pgharbor`` on one of them (names no area claims land on the index, so a
  new public name is never left out), and a page per public subpackage.
  mkdocstrings renders the docstrings.
"""

from __future__ import annotations

import ast
import posixpath
import re
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

#: Repository files (globs) that join the site under their own paths.
OUTSIDE = (
    "CHANGELOG.md",
    "benchmarks/README.md",
    "benchmarks/RESULTS.md",
    "benchmarks/*.png",
    "examples/*.py",
)

#: Reference pages: (page, title, introduction, names of ``pgharbor.__all__``,
#: modules documented whole — their docstring, then every name of their ``__all__``).
AREAS: list[tuple[str, str, str, list[str], list[str]]] = [
    (
        "pools",
        "Pools",
        "Connection pools over psycopg, asyncpg and psycopg2. Guide: [Pools](../pool.md).",
        ["Pool", "AsyncPool", "PoolOptions", "Backoff", "BreakerOptions"],
        [],
    ),
    (
        "databases",
        "Databases",
        "Databases with query helpers, transactions and retries, and several named "
        "databases at once. Guide: [Databases](../database.md).",
        [
            "Database",
            "AsyncDatabase",
            "Transaction",
            "AsyncTransaction",
            "Row",
            "Isolation",
            "RetryPolicy",
            "BatchProgress",
            "DatabaseManager",
            "AsyncDatabaseManager",
            "CheckReport",
            "DatabaseCheck",
            "ServerVersion",
        ],
        [],
    ),
    (
        "config",
        "Configuration",
        "Every setting with its default and rule: [Configuration](../config.md#settings).",
        [],
        ["pgharbor.config"],
    ),
    (
        "observability",
        "Observability",
        "Health, alerts, lifecycle events and metrics sinks. "
        "Guide: [Observability](../observability.md).",
        ["Alerts", "HealthThresholds", "HealthReport", "DatabaseHealth"],
        ["pgharbor.metrics"],
    ),
    (
        "schema",
        "Schema snapshots and diffs",
        "Guide: [Schema snapshots and diffs](../schema.md).",
        ["SchemaSnapshot", "Difference", "diff"],
        [],
    ),
    (
        "migrations",
        "Migrations",
        "Guide: [Migrations](../migrations.md).",
        ["Migrations", "AsyncMigrations", "MigrationPlan", "MigrationStatus", "MigrationStep"],
        [],
    ),
    (
        "sagas",
        "Sagas",
        "Guide: [Sagas](../sagas.md).",
        ["Saga", "AsyncSaga", "SagaContext", "SagaResult"],
        [],
    ),
    (
        "untrusted-sql",
        "Untrusted SQL",
        "The guard, bounded fetches and SQL composition. "
        "Guide: [SQL from untrusted callers](../untrusted-sql.md).",
        ["Guard", "Rows"],
        ["pgharbor.sql"],
    ),
    ("errors", "Errors", "", [], ["pgharbor.errors"]),
    (
        "testing",
        "pgharbor.testing",
        "",
        [],
        ["pgharbor.testing"],
    ),
]

#: Integration modules, documented when the build has them.
INTEGRATIONS = (
    "pgharbor.sqlalchemy",
    "pgharbor.django",
    "pgharbor.compat.psycopg_pool",
    "pgharbor.compat.asyncpg",
)

_LINK = re.compile(r"(\]\()([^)\s#]*)(#[^)\s]*)?((?:\s+\"[^\"]*\")?\))")


def _root(config: MkDocsConfig) -> Path:
    return Path(str(config.config_file_path)).parent


def _source(root: Path, module: str) -> Path | None:
    """The source file of ``module`` under ``src/``, or None."""
    base = root / "src" / Path(*module.split("."))
    for path in (base / "__init__.py", base.with_suffix(".py")):
        if path.is_file():
            return path
    return None


def public_names(root: Path, module: str) -> list[str]:
    """``module.__all__`` as written in its source (nothing is imported)."""
    path = _source(root, module)
    if path is None:
        return []
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            return [str(name) for name in ast.literal_eval(node.value)]
    return []


def _objects(names: list[str], prefix: str) -> list[str]:
    return [f"::: {prefix}.{name}\n" for name in names if not name.startswith("__")]


def _module_block(root: Path, module: str) -> list[str]:
    """The module's docstring, then each public name."""
    options = "members: false\n      show_root_heading: false\n      show_root_toc_entry: false"
    lines = [f"::: {module}\n    options:\n      {options}\n"]
    return lines + _objects(public_names(root, module), module)


def reference_pages(root: Path) -> dict[str, str]:
    """The generated pages of the API reference, by site path."""
    everything = [n for n in public_names(root, "pgharbor") if not n.startswith("__")]
    claimed: set[str] = set()
    pages: dict[str, str] = {}
    index = [
        "# API reference\n",
        "Generated from the docstrings. Every public name of `pgharbor` is on one "
        "of these pages; the subpackages have their own.\n",
    ]
    for slug, title, intro, names, modules in AREAS:
        blocks = [f"# {title}\n", f"{intro}\n" if intro else ""]
        for module in modules:
            blocks += _module_block(root, module)
            claimed |= set(public_names(root, module))
        blocks += _objects(names, "pgharbor")
        claimed |= set(names)
        pages[f"reference/{slug}.md"] = "\n".join(blocks)
        index.append(f"- [{title}]({slug}.md)")
    present = [m for m in INTEGRATIONS if _source(root, m) is not None]
    integrations = ["# Integrations\n"]
    if not present:
        integrations.append("No integration module is part of this build.\n")
    for module in present:
        integrations += [f"## `{module}`\n", *_module_block(root, module)]
        claimed |= set(public_names(root, module))
    pages["reference/integrations.md"] = "\n".join(integrations)
    index.append("- [Integrations](integrations.md)\n")
    others = [n for n in everything if n not in claimed]
    if others:
        index += ["## Other names\n", *_objects(others, "pgharbor")]
    pages["reference/index.md"] = "\n".join(index)
    return pages


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Bring in the files from outside ``docs/`` and the generated reference."""
    root = _root(config)
    for pattern in OUTSIDE:
        for path in sorted(root.glob(pattern)):
            uri = path.relative_to(root).as_posix()
            files.append(
                File(uri, str(root), str(config.site_dir), bool(config.use_directory_urls))
            )
    for uri, text in reference_pages(root).items():
        files.append(File.generated(config, uri, content=text))
    return files


def _repository_path(page: Page, config: MkDocsConfig) -> str:
    """Where the page's source sits in the repository."""
    source = page.file.abs_src_path
    docs = Path(str(config.docs_dir)).resolve()
    if source is None or Path(source).resolve().is_relative_to(docs):
        docs_rel = docs.relative_to(_root(config).resolve()).as_posix()
        return posixpath.join(docs_rel, page.file.src_uri)
    return page.file.src_uri


def on_page_markdown(
    markdown: str, page: Page, config: MkDocsConfig, files: Files, **_: Any
) -> str:
    """Rewrite repository-relative links to where their targets are in the site."""
    here = _repository_path(page, config)
    docs_rel = Path(str(config.docs_dir)).resolve().relative_to(_root(config).resolve()).as_posix()

    def site_uri(repository_path: str) -> str | None:
        if repository_path.startswith(docs_rel + "/"):
            return repository_path[len(docs_rel) + 1 :]
        return repository_path if files.get_file_from_path(repository_path) else None

    def replace(match: re.Match[str]) -> str:
        target = match.group(2)
        if not target or "://" in target or target.startswith(("/", "mailto:")):
            return match.group(0)
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(here), target))
        uri = site_uri(resolved)
        if uri is None:
            return match.group(0)  # strict mode reports it
        new = posixpath.relpath(uri, posixpath.dirname(page.file.src_uri) or ".")
        return f"{match.group(1)}{new}{match.group(3) or ''}{match.group(4)}"

    return _LINK.sub(replace, markdown)
