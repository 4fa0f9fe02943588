"""Columns without a dataframe library: what readers produce and the analysis runs on.

`tracekit explain` runs on plain numpy columns so that it never imports polars (0.13 s of a
0.5 s run on a 30 MB trace, and ~40 MB of memory); polars tables are built from these columns
only when a user asks for one (``trace.gpu_ops``, ``Steps.ops``, ``Explanation.steps`` …).

A :class:`Table` is equal-length columns of three kinds:

* **numbers** — an ``int64``/``int32``/``bool``/``float64`` array. A nullable column carries a
  validity mask (``table.valid(name)``); its null slots hold 0.
* **strings** — :class:`Strings`: ``uint32`` codes into a list of distinct values. A trace has a
  million kernel and op rows but a few hundred distinct names, so anything computed from a name
  (a regex match, a category) is computed once per distinct value.

``schema`` maps each column to its polars type name (``"Int64"``, ``"Utf8"`` …), the same schema
the polars table has (see :mod:`tracekit.trace.model`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

#: numpy dtype of each polars type name a table may hold
_NUMPY = {"Int64": np.int64, "Int32": np.int32, "UInt32": np.uint32, "Boolean": np.bool_,
          "Float64": np.float64}


class Strings:
    """A string column: ``codes`` (uint32) into ``values`` (distinct strings; may hold None)."""

    __slots__ = ("codes", "values")

    def __init__(self, codes: np.ndarray, values: list) -> None:
        self.codes = codes
        self.values = values

    @classmethod
    def of(cls, items: Iterable) -> Strings:
        """Code a sequence of strings (None allowed)."""
        index: dict = {}
        codes = np.fromiter((index.setdefault(s, len(index)) for s in items), np.uint32)
        return cls(codes, list(index))

    @classmethod
    def full(cls, value, n: int) -> Strings:
        return cls(np.zeros(n, np.uint32), [value])

    def __len__(self) -> int:
        return self.codes.size

    def __getitem__(self, i: int):
        return self.values[self.codes[i]]

    def take(self, idx: np.ndarray) -> Strings:
        return Strings(self.codes[idx], self.values)

    def where(self, pred: Callable[[object], bool]) -> np.ndarray:
        """``pred`` of each row as a bool mask, evaluated once per distinct value."""
        if not self.values:
            return np.zeros(self.codes.size, dtype=bool)
        per_value = np.fromiter((bool(pred(v)) for v in self.values), bool, len(self.values))
        return per_value[self.codes]

    def map(self, fn: Callable, dtype=object) -> np.ndarray:
        """``fn`` of each row as an array, evaluated once per distinct value."""
        per_value = np.array([fn(v) for v in self.values], dtype=dtype)
        return per_value[self.codes] if per_value.size else np.empty(0, dtype)

    def eq(self, value) -> np.ndarray:
        return self.where(lambda v: v == value)

    def isin(self, values) -> np.ndarray:
        s = set(values)
        return self.where(lambda v: v in s)

    def tolist(self) -> list:
        vals = self.values
        return [vals[c] for c in self.codes.tolist()]

    def dense(self) -> tuple[np.ndarray, list]:
        """(codes, values) with only the values that occur, in order of first occurrence (row
        order), and codes into them: ``values[codes[i]]`` is row ``i``."""
        if self.codes.size == 0:
            return np.empty(0, np.int64), []
        uniq, first, inverse = np.unique(self.codes, return_index=True, return_inverse=True)
        order = np.argsort(first, kind="stable")
        rank = np.empty(order.size, np.int64)
        rank[order] = np.arange(order.size)
        return rank[inverse.ravel()], [self.values[int(u)] for u in uniq[order]]

    def to_polars(self, name: str):
        import polars as pl

        values = pl.Series(name, self.values, dtype=pl.Utf8)
        return values.gather(self.codes) if self.codes.size else pl.Series(name, [], pl.Utf8)


class Table:
    """Equal-length columns (see the module docstring). Build once, do not mutate columns."""

    __slots__ = ("cols", "masks", "schema", "height")

    def __init__(self, cols: dict, schema: dict[str, str], masks: dict | None = None) -> None:
        self.cols = cols
        self.schema = schema
        self.masks = {k: v for k, v in (masks or {}).items() if v is not None and not v.all()}
        self.height = len(next(iter(cols.values()))) if cols else 0

    @classmethod
    def empty(cls, schema: dict[str, str]) -> Table:
        return cls({k: Strings(np.empty(0, np.uint32), []) if t == "Utf8"
                    else np.empty(0, _NUMPY[t]) for k, t in schema.items()}, schema)

    @classmethod
    def concat(cls, tables: list[Table]) -> Table:
        """The rows of ``tables`` (one schema) one after another; string codes are merged."""
        schema = tables[0].schema
        cols: dict[str, Strings | np.ndarray] = {}
        masks: dict[str, np.ndarray] = {}
        for name, dtype in schema.items():
            parts = [t.cols[name] for t in tables]
            if dtype == "Utf8":
                index: dict = {}
                codes = [np.fromiter((index.setdefault(v, len(index)) for v in p.values),
                                     np.uint32, len(p.values))[p.codes] if p.values
                         else p.codes for p in parts]
                cols[name] = Strings(np.concatenate(codes).astype(np.uint32), list(index))
            else:
                cols[name] = np.concatenate(parts)
            if any(t.has_nulls(name) for t in tables):
                masks[name] = np.concatenate([t.valid(name) for t in tables])
        return cls(cols, schema, masks)

    def __getitem__(self, name: str):
        return self.cols[name]

    def __contains__(self, name: str) -> bool:
        return name in self.cols

    def valid(self, name: str) -> np.ndarray:
        """Which rows of a column are not null."""
        m = self.masks.get(name)
        return m if m is not None else np.ones(self.height, dtype=bool)

    def has_nulls(self, name: str) -> bool:
        return name in self.masks

    def filled(self, name: str, value) -> np.ndarray:
        """A number column with its nulls replaced by ``value``."""
        m = self.masks.get(name)
        col = self.cols[name]
        return col if m is None else np.where(m, col, value)

    def take(self, idx: np.ndarray) -> Table:
        """The rows ``idx`` (an index array, or a bool mask), in that order."""
        cols = {k: v.take(idx) if isinstance(v, Strings) else v[idx] for k, v in self.cols.items()}
        return Table(cols, self.schema, {k: m[idx] for k, m in self.masks.items()})

    def select(self, names) -> Table:
        """The columns ``names``, in that order (the same arrays, not copies)."""
        return Table({k: self.cols[k] for k in names}, {k: self.schema[k] for k in names},
                     {k: self.masks[k] for k in names if k in self.masks})

    def with_columns(self, schema: dict[str, str], masks: dict | None = None, **cols) -> Table:
        """This table plus (or with replaced) columns ``cols`` of types ``schema``."""
        out_masks = {k: m for k, m in self.masks.items() if k not in cols}
        out_masks.update(masks or {})
        return Table({**self.cols, **cols}, {**self.schema, **schema}, out_masks)

    def to_polars(self):
        """The polars table (nulls where masked, the schema's types)."""
        import polars as pl

        series = []
        for name, dtype in self.schema.items():
            col = self.cols[name]
            if isinstance(col, Strings):
                s = col.to_polars(name)
            else:
                s = pl.Series(name, col, dtype=getattr(pl, dtype))
            m = self.masks.get(name)
            if m is not None:
                s = s.set(pl.Series(~m), None)
            series.append(s)
        return pl.DataFrame(series) if series else pl.DataFrame()

    @classmethod
    def from_polars(cls, df) -> Table:
        """The columns of a polars table (strings coded, nulls masked)."""
        import polars as pl

        cols, masks, schema = {}, {}, {}
        for name, dtype in df.schema.items():
            s = df[name]
            if dtype == pl.Utf8 or dtype == pl.Categorical or isinstance(dtype, pl.Enum):
                s = s.cast(pl.Utf8)
                uniq = s.unique(maintain_order=True)
                values = uniq.to_list()
                codes = (s.cast(pl.Enum([v for v in values if v is not None]))
                         .to_physical().fill_null(0).to_numpy().astype(np.uint32)
                         if s.len() else np.empty(0, np.uint32))
                if None in values:  # nulls: point them at a None entry
                    values = [v for v in values if v is not None] + [None]
                    codes = np.where(s.is_null().to_numpy(), len(values) - 1, codes).astype(
                        np.uint32)
                cols[name] = Strings(codes, values)
                schema[name] = "Utf8"
                continue
            type_name = str(dtype.base_type()) if hasattr(dtype, "base_type") else str(dtype)
            type_name = {"Int8": "Int32", "Int16": "Int32", "UInt8": "Int32", "UInt16": "Int32",
                         "UInt64": "Int64", "Float32": "Float64", "Datetime": "Int64",
                         "Duration": "Int64", "Null": "Int64"}.get(type_name, type_name)
            if type_name not in _NUMPY:
                raise TypeError(f"column {name!r} of type {dtype} has no numpy form here")
            np_type = _NUMPY[type_name]
            if s.null_count():
                masks[name] = s.is_not_null().to_numpy()
                s = s.fill_null(False if type_name == "Boolean" else 0)
            cols[name] = s.to_numpy().astype(np_type, copy=False)
            schema[name] = type_name
        return cls(cols, schema, masks)

