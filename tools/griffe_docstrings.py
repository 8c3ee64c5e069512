"""A griffe extension for the docs site: reST habits in docstrings, as Markdown.

The docstrings are Google style, read in ``help()`` and in editors as often
as on the site, and some use two reST habits that read well there: a
paragraph ending in ``::`` before an indented example, and roles such as
``:class:`PoolOptions```. Markdown (mkdocstrings) would print the ``::`` and
the role's markup verbatim; this rewrites both while the docs are built,
leaving the sources as they are.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

__all__ = ["ReSTHabits", "to_markdown"]

_ROLE = re.compile(r":(?:class|func|meth|attr|mod|exc|data|obj):`(~?)\.?([^`]+)`")
_ALONE = re.compile(r"(?m)^[ \t]*::[ \t]*\n")
_ENDING = re.compile(r"(?m)(?<=\S)::[ \t]*$")


def _role(match: re.Match[str]) -> str:
    name = match.group(2)
    return f"`{name.rsplit('.', 1)[-1] if match.group(1) else name}`"


def to_markdown(text: str) -> str:
    """``text`` with reST roles as code spans and ``::`` introducers as ``:``
    (a line holding only ``::`` is dropped); the indented block that follows
    is a Markdown code block as it is."""
    text = _ROLE.sub(_role, text)
    return _ENDING.sub(":", _ALONE.sub("", text))


class ReSTHabits(griffe.Extension):
    """Rewrite every docstring with `to_markdown` as it is loaded."""

    def on_object(self, *, obj: griffe.Object, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        """Called by griffe for each object once loaded."""
        if obj.docstring is not None:
            obj.docstring.value = to_markdown(obj.docstring.value)
