"""Migration files: names, up and down parts, checksums, statements.

A directory holds versioned SQL files::

    0001_create_orders.sql          the up part
    0001_create_orders.down.sql     its down part (optional)
    0002_add_status.sql             or one file with both, in sections:
        -- migrate:up
        ALTER TABLE orders ADD status text;
        -- migrate:down
        ALTER TABLE orders DROP status;

The version is the leading number (any width: ``0001``, ``20240601120000``);
versions are unique. A marker line may carry ``transaction:false`` (run each
statement on its own, for statements that cannot run in a transaction next to
others) or ``transaction:true`` (insist on one). Without it, a part whose
statements all must run outside a transaction (``CREATE INDEX
CONCURRENTLY``...) runs without one; a part mixing both kinds is refused, so
that half a migration is never committed by surprise. A ``.sql`` file whose
name does not follow the pattern is an error, not ignored: a misnamed
migration that silently never runs is the classic way to lose one.

The checksum is SHA-256 of the up part with line endings made ``\\n``: a
checkout on Windows does not count as an edit; editing the down part of an
applied migration is allowed (it is what rolling back will run).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from .._pgparse import Statement, comment_lines, parse_error_line, pglast, split_statements
from ..errors import MigrationError

__all__ = ["Migration", "Part", "load_directory", "load_migration"]

_NAME = re.compile(r"^(?P<version>\d+)_(?P<name>[^.]+?)(?P<down>\.down)?\.sql$")
_MARKER = re.compile(r"^--\s*migrate:(?P<dir>up|down)\b(?P<options>.*)$")
_TRANSACTION_OPTION = re.compile(r"^transaction:(true|false)$")


@dataclass(frozen=True, slots=True)
class Part:
    """The up or the down part of a migration.

    Attributes:
        file: where it is written (for messages).
        statements: its statements, in order.
        transactional: whether it runs in one transaction.
        why_not: when it does not, why (``"CREATE INDEX CONCURRENTLY at line
            3"``, or ``"transaction:false"``).
    """

    file: str
    statements: tuple[Statement, ...]
    transactional: bool
    why_not: str | None = None


@dataclass(frozen=True, slots=True)
class Migration:
    """One versioned migration read from its file(s).

    Attributes:
        version: the leading number of the file name.
        name: the rest of the name (``create_orders``).
        file: the up file's path.
        up: what applying it runs.
        down: what rolling it back runs; None when it cannot be rolled back.
        checksum: SHA-256 of the up part (hex).
    """

    version: int
    name: str
    file: str
    up: Part
    down: Part | None
    checksum: str

    @property
    def label(self) -> str:
        """``0003_add_index``-style label: the file name without ``.sql``."""
        return Path(self.file).name.removesuffix(".sql")


def _checksum(text: str) -> str:
    normalized = text.replace("\r\n", "\n").replace("\r", "\n").strip()
    return hashlib.sha256(normalized.encode("utf-8")).hexdigest()


def _sections(text: str, file: str) -> dict[str, tuple[str, bool | None]]:
    """The ``-- migrate:up`` / ``-- migrate:down`` sections of ``text``, each
    as (its text with the lines before it blanked, its transaction option).

    The lines before a section are kept as empty lines, so line numbers in
    the section are the file's. Without markers the whole text is ``up``.
    """
    markers = []
    for line, comment in comment_lines(text):
        match = _MARKER.match(comment.strip())
        if match is None:
            continue
        option: bool | None = None
        for word in match.group("options").split():
            opt = _TRANSACTION_OPTION.match(word)
            if opt is None:
                raise MigrationError(
                    f"{file}:{line}: unknown option {word!r} on the migrate marker "
                    "(known: transaction:true, transaction:false)"
                )
            option = opt.group(1) == "true"
        markers.append((line, match.group("dir"), option))
    lines = text.split("\n")
    if not markers:
        return {"up": (text, None)}
    sections: dict[str, tuple[str, bool | None]] = {}
    before = "\n".join(lines[: markers[0][0] - 1])
    if before.strip() and split_statements(before):
        raise MigrationError(
            f"{file}:{markers[0][0]}: statements before the first '-- migrate:' marker"
        )
    for i, (line, direction, option) in enumerate(markers):
        if direction in sections:
            raise MigrationError(f"{file}:{line}: a second '-- migrate:{direction}' section")
        end = markers[i + 1][0] - 1 if i + 1 < len(markers) else len(lines)
        body = "\n" * line + "\n".join(lines[line:end])
        sections[direction] = (body, option)
    return sections


def _part(text: str, file: str, option: bool | None) -> Part:
    """Parse one part and decide whether it runs in a transaction."""
    try:
        statements = tuple(split_statements(text))
    except pglast().parser.ParseError as exc:
        line = parse_error_line(exc, text)
        where = f"{file}:{line}" if line is not None else file
        raise MigrationError(f"{where}: PostgreSQL's parser refuses it: {exc.args[0]}") from None
    for st in statements:
        if st.refused is not None:
            raise MigrationError(f"{file}:{st.line}: {st.refused}")
    outside = [st for st in statements if st.outside_transaction is not None]
    if option is False:
        return Part(file, statements, False, "transaction:false")
    if outside and option is True:
        st = outside[0]
        raise MigrationError(
            f"{file}:{st.line}: {st.outside_transaction} cannot run inside a transaction, "
            "but the marker says transaction:true"
        )
    if not outside:
        return Part(file, statements, True)
    if len(outside) == len(statements):
        first = outside[0]
        return Part(file, statements, False, f"{first.outside_transaction} at line {first.line}")
    inside = next(st for st in statements if st.outside_transaction is None)
    st = outside[0]
    raise MigrationError(
        f"{file}:{st.line}: {st.outside_transaction} cannot run inside a transaction, and "
        f"the other statements (line {inside.line}...) would then run without one: move it "
        "to a migration of its own, or mark the part '-- migrate:up transaction:false' "
        "to run every statement on its own"
    )


def load_migration(up_path: Path, down_path: Path | None = None) -> Migration:
    """Read one migration from its up file (and its ``.down.sql`` twin).

    Raises:
        MigrationError: a bad name, sections or SQL; the message says where.
    """
    match = _NAME.match(up_path.name)
    if match is None or match.group("down"):
        raise MigrationError(f"{up_path}: not a migration file name (NNNN_name.sql)")
    file = str(up_path)
    try:
        text = up_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise MigrationError(f"{file}: cannot be read: {exc}") from exc
    sections = _sections(text, file)
    if "up" not in sections:
        raise MigrationError(f"{file}: has a '-- migrate:down' section but no '-- migrate:up'")
    up_text, up_option = sections["up"]
    down: Part | None = None
    if "down" in sections:
        if down_path is not None:
            raise MigrationError(f"{file}: has a down section and a {down_path.name} twin")
        down_text, down_option = sections["down"]
        down = _part(down_text, file, down_option)
    elif down_path is not None:
        dfile = str(down_path)
        try:
            dtext = down_path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise MigrationError(f"{dfile}: cannot be read: {exc}") from exc
        dsections = _sections(dtext, dfile)
        if "up" in dsections and len(dsections) == 1:
            down = _part(dtext, dfile, None)  # no markers: the whole file
        elif set(dsections) == {"down"}:
            down = _part(dsections["down"][0], dfile, dsections["down"][1])
        else:
            raise MigrationError(f"{dfile}: a .down.sql file holds a down part only")
    return Migration(
        version=int(match.group("version")),
        name=match.group("name"),
        file=file,
        up=_part(up_text, file, up_option),
        down=down,
        checksum=_checksum(up_text),
    )


def load_directory(directory: str | Path) -> list[Migration]:
    """Every migration in ``directory`` (not its subdirectories), by version.

    Raises:
        MigrationError: the directory is missing, a ``.sql`` file is misnamed,
            two files share a version, a ``.down.sql`` file has no up file, or
            a file does not parse; the message names the file (and line).
    """
    root = Path(directory)
    if not root.is_dir():
        raise MigrationError(f"{root}: no such migrations directory")
    ups: dict[int, Path] = {}
    downs: dict[int, Path] = {}
    for path in sorted(root.glob("*.sql")):
        match = _NAME.match(path.name)
        if match is None:
            raise MigrationError(
                f"{path}: not a migration file name (NNNN_name.sql or NNNN_name.down.sql)"
            )
        version = int(match.group("version"))
        table = downs if match.group("down") else ups
        if version in table:
            raise MigrationError(f"{path}: version {version} is also {table[version].name}")
        table[version] = path
    for version, path in downs.items():
        up = ups.get(version)
        if up is None:
            raise MigrationError(f"{path}: no up file with version {version}")
        if up.name.removesuffix(".sql") != path.name.removesuffix(".down.sql"):
            raise MigrationError(f"{path}: does not match its up file {up.name}")
    return [load_migration(ups[v], downs.get(v)) for v in sorted(ups)]
