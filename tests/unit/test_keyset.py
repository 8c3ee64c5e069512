"""Keyset pagination statements and batch chunks: the pure part."""

from __future__ import annotations

import sys

import pytest

from pgharbor._batch import KeysetQuery, chunks, size_of
from pgharbor.drivers.query import row_class
from pgharbor.errors import ConfigError

Row2 = row_class(["day", "id"])


def test_statements_cut_by_the_key_never_by_offset() -> None:
    """The first page orders and limits; the next compares the key with the
    last row's, in the driver's placeholder style; OFFSET never appears."""
    q = KeysetQuery("SELECT day, id FROM t WHERE x = %s", (7,), key=("day", "id"), page_size=50)
    first, params = q.first()
    assert first.endswith('ORDER BY "day", "id" LIMIT 50') and params == (7,)
    nxt, params = q.after(Row2(("2024-01-01", 9)))
    assert '("day", "id") > (%s, %s) ORDER BY "day", "id" LIMIT 50' in nxt
    assert params == (7, "2024-01-01", 9)
    assert "OFFSET" not in first + nxt

    d = KeysetQuery(
        "SELECT day, id FROM t WHERE x = $1",
        [7],
        key=["day", "id"],
        page_size=5,
        descending=True,
        dollar=True,
    )
    nxt, params = d.after(Row2(("d", 3)))
    assert '("day", "id") < ($2, $3) ORDER BY "day" DESC, "id" DESC LIMIT 5' in nxt
    assert params == (7, "d", 3)

    named = KeysetQuery("SELECT day, id FROM t WHERE x = %(x)s", {"x": 1}, key="id", page_size=2)
    nxt, params = named.after(Row2(("d", 3)))
    assert '("id") > (%(_pgharbor_k0)s)' in nxt and params == {"x": 1, "_pgharbor_k0": 3}


def test_query_text_is_kept_safe() -> None:
    """A trailing comment cannot swallow the wrapper; without parameters a
    literal % is escaped for the parameters the next pages send."""
    q = KeysetQuery("SELECT id FROM t WHERE s LIKE 'a%' -- note", None, key="id", page_size=3)
    first, _ = q.first()
    assert "LIKE 'a%%' -- note\n) AS _pgharbor_page" in first


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"key": ""}, "key"),
        ({"key": []}, "key"),
        ({"key": ["id", "id"]}, "key"),
        ({"page_size": 0}, "page_size"),
        ({"page_size": True}, "page_size"),
        ({"params": "abc"}, "params"),
        ({"params": {"a": 1}, "dollar": True}, "params"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], field: str) -> None:
    """Bad arguments raise ConfigError naming the field."""
    args: dict[str, object] = {"key": "id", "page_size": 10, "params": None, **kwargs}
    params = args.pop("params")
    with pytest.raises(ConfigError, match=field):
        KeysetQuery("SELECT id FROM t", params, **args)  # type: ignore[arg-type]


def test_chunks_are_lazy_and_sized() -> None:
    """chunks() reads lazily in lists of the size; None is one chunk."""
    assert list(chunks(iter(range(5)), 2)) == [[0, 1], [2, 3], [4]]
    assert list(chunks(range(3), None)) == [[0, 1, 2]]
    assert list(chunks([], 4)) == [] and list(chunks([], None)) == []
    assert size_of([1, 2]) == 2 and size_of(iter([1])) is None


def test_without_the_parser_the_extra_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without pglast, reading SQL says which extra to install."""
    monkeypatch.setitem(sys.modules, "pglast", None)
    with pytest.raises(ImportError, match=r"pip install 'pgharbor\[sql\]'"):
        KeysetQuery("SELECT id FROM t", None, key="id", page_size=10)
