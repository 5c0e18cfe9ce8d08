"""Spark SQL text for expressions built in bulk.

An expression built with the Column API costs one round trip to the JVM per node (column,
literal, function, alias), and releasing the Python proxies costs as many again. Wide
projections (contract tables of 60 columns, the panel's 50 features, lookup maps of 100
entries) are written as SQL text instead: one call per expression, or per projection with
``selectExpr``.
"""

from __future__ import annotations


def name(column: str) -> str:
    """A column name quoted for Spark SQL text."""
    return "`" + column.replace("`", "``") + "`"


def string(value: str) -> str:
    """A Spark SQL string literal of ``value`` (characters outside printable ASCII as ``\\u`` escapes)."""
    escaped = []
    for char in value:
        if char in "'\\":
            escaped.append("\\" + char)
        elif " " <= char <= "~":
            escaped.append(char)
        else:  # as UTF-16 code units: a character beyond U+FFFF is a surrogate pair
            units = char.encode("utf-16-be")
            escaped += [f"\\u{units[i]:02x}{units[i + 1]:02x}" for i in range(0, len(units), 2)]
    return "'" + "".join(escaped) + "'"


def string_map(mapping: dict[str, str]) -> str:
    """A Spark SQL ``map`` literal of string keys and values, in sorted key order."""
    return "map(" + ", ".join(f"{string(k)}, {string(v)}" for k, v in sorted(mapping.items())) + ")"
