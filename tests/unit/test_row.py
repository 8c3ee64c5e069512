"""`Row`: a tuple with names — indexes, keys, attributes, dict(), JSON."""

from __future__ import annotations

import copy
import dataclasses
import datetime
import decimal
import json
import uuid

import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import to_jsonable_python

from pgharbor import Row
from pgharbor.drivers.queries_psycopg import cached_row_class
from pgharbor.drivers.query import row_class


def make(names: list[str], values: tuple[object, ...]) -> Row:
    return row_class(names)(values)


def test_a_row_is_its_tuple() -> None:
    """A row compares, hashes, unpacks and slices as the tuple of its values."""
    row = make(["id", "name"], (1, "x"))
    assert row == (1, "x") and hash(row) == hash((1, "x"))
    ident, name = row
    assert (ident, name) == (1, "x") and row[1:] == ("x",) and len(row) == 2
    assert isinstance(row, tuple) and isinstance(row, Row)


def test_names_keys_and_dict() -> None:
    """row["name"], get, keys, items and dict(row) answer by column name."""
    row = make(["id", "name"], (1, "x"))
    assert row["name"] == "x" and row.get("id") == 1 and row.get("nope", 7) == 7
    assert row.keys() == ["id", "name"]
    assert row.items() == [("id", 1), ("name", "x")]
    assert dict(row) == {"id": 1, "name": "x"}
    with pytest.raises(KeyError, match="no column 'nope' \\(columns: id, name\\)"):
        row["nope"]


def test_columns_are_attributes() -> None:
    """row.id reads a column; a missing one is an AttributeError listing the columns."""
    row = make(["id", "name", "?column?"], (1, "x", 3))
    assert row.id == 1 and row.name == "x" and getattr(row, "?column?") == 3
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = row.nope
    assert not hasattr(row, "nope")


def test_count_and_index_columns_hide_the_tuple_methods() -> None:
    """Columns called count and index are attributes, as in a namedtuple."""
    row = make(["status", "count", "index"], ("ok", 12, 3))
    # Type checkers still see the tuple's methods there: row["count"] is typed.
    assert row.count == 12 and row.index == 3  # type: ignore[comparison-overlap]
    assert dict(row) == {"status": "ok", "count": 12, "index": 3}


def test_row_methods_win_over_columns() -> None:
    """A column named like a Row method (keys, get, items) or a dunder is
    reached by name only: dict(row) and the methods keep working."""
    row = make(["keys", "get", "__class__", "x"], (1, 2, 3, 4))
    assert row["keys"] == 1 and row["get"] == 2 and row["__class__"] == 3
    assert row.keys() == ["keys", "get", "__class__", "x"] and type(row).__mro__[1] is Row
    assert dict(row) == {"keys": 1, "get": 2, "__class__": 3, "x": 4}
    assert row.x == 4


def test_rows_of_one_result_share_their_class() -> None:
    """One class per column list (cached): names are not stored per row."""
    a = cached_row_class(("id", "name"))((1, "x"))
    b = cached_row_class(("id", "name"))((2, "y"))
    assert type(a) is type(b) and a.name == "x" and b.name == "y"


def test_copies_keep_the_class() -> None:
    """copy and deepcopy give equal rows of the same class."""
    row = make(["id", "tags"], (1, ["a"]))
    for clone in (copy.copy(row), copy.deepcopy(row)):
        assert clone == row and type(clone) is type(row) and clone.tags == ["a"]


def test_rows_are_objects_for_encoders() -> None:
    """FastAPI's jsonable_encoder and pydantic's to_jsonable_python give
    objects; dataclasses.asdict works."""
    from fastapi.encoders import jsonable_encoder

    when = datetime.datetime(2024, 5, 1, 12, 30, tzinfo=datetime.UTC)
    ident = uuid.UUID(int=5)
    row = make(["id", "at", "price", "count"], (ident, when, decimal.Decimal("1.50"), 2))
    expected = {"id": str(ident), "at": "2024-05-01T12:30:00Z", "price": "1.50", "count": 2}
    encoded = jsonable_encoder([row])
    # FastAPI's own choices: +00:00 for UTC, Decimal as a float.
    assert encoded == [{**expected, "at": "2024-05-01T12:30:00+00:00", "price": 1.5}]
    assert to_jsonable_python(row) == expected
    assert dataclasses.is_dataclass(row) and dataclasses.asdict(row)["count"] == 2
    assert json.dumps(dict(make(["a"], (1,)))) == '{"a": 1}'


def test_a_bare_row_is_not_a_dataclass() -> None:
    """Row itself, and a row class with a column named like a Row method, are
    not dataclasses: the latter is a list for jsonable_encoder."""
    from fastapi.encoders import jsonable_encoder

    assert not dataclasses.is_dataclass(Row) and not dataclasses.is_dataclass(Row((1,)))
    odd = make(["keys", "x"], (1, 2))
    assert not dataclasses.is_dataclass(odd)
    assert jsonable_encoder(odd) == [1, 2]


def test_pydantic_types_rows_as_objects() -> None:
    """As a pydantic type, a Row serialises as an object (also with a column
    named like a method), validates from a mapping, and has an object schema."""
    adapter = TypeAdapter(list[Row])
    rows = [make(["id", "keys"], (1, "k"))]
    assert adapter.dump_python(rows, mode="json") == [{"id": 1, "keys": "k"}]
    assert adapter.dump_json(rows) == b'[{"id":1,"keys":"k"}]'
    (made,) = adapter.validate_python([{"a": 1, "b": None}])
    assert isinstance(made, Row) and made.b is None
    assert made == (1, None)
    assert adapter.validate_python(rows)[0] is rows[0]
    with pytest.raises(ValidationError, match="must be a Row or a mapping"):
        adapter.validate_python([[1, 2]])
    schema = TypeAdapter(Row).json_schema(mode="serialization")
    assert schema == {"type": "object", "additionalProperties": True}

    class Page(BaseModel):
        rows: list[Row]

    assert Page(rows=rows).model_dump(mode="json") == {"rows": [{"id": 1, "keys": "k"}]}


def test_repr_names_the_columns() -> None:
    """repr shows name=value pairs."""
    assert repr(make(["id", "name"], (1, "x"))) == "Row(id=1, name='x')"
