"""Customers from a CSV file into the embedded directory: all rows or none.

The file is whatever a spreadsheet or a CRM export gives, so every row is checked before
anything is written, every problem is reported as ``FILE:LINE: what is wrong`` (all of them, not
just the first), and the rows go in as one transaction only when none is wrong. A half-imported
customer list would be worse than none: callers would be "unknown" at random.

Columns (header required, any order)::

    customer_number,name,phones,postcode,house_number,birth_date,pin

``phones`` holds one or more numbers separated by ``;``; ``birth_date`` is ``YYYY-MM-DD`` or
empty when not known; the ``pin`` column may be left out or empty (4 to 8 digits when given,
stored hashed only).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from voicebot.errors import Problem
from voicebot.identity import Customer, fields
from voicebot.identity.directory import CustomerExists, SqliteDirectory

REQUIRED_COLUMNS = ("customer_number", "name", "phones", "postcode", "house_number", "birth_date")
OPTIONAL_COLUMNS = ("pin",)
COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
MAX_FILE_BYTES = 64 * 1024 * 1024       # far more than any customer list; refuses a wrong file at once

T = TypeVar("T")


@dataclass(frozen=True)
class Row:
    line: int
    customer: Customer = field(repr=False)
    pin: str | None = field(default=None, repr=False)


@dataclass
class ImportResult:
    added: int = 0
    updated: int = 0
    pins: int = 0                   # rows that carried a PIN in plain text
    problems: list[Problem] = field(default_factory=list)


def _read_text(path: Path) -> str:
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ValueError(f"file is {size} bytes, more than the {MAX_FILE_BYTES} a customer list may have")
    try:
        return path.read_bytes().decode("utf-8-sig")       # a spreadsheet's UTF-8 starts with a BOM
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text (byte {exc.start}); save the file as CSV UTF-8") from None


def _check_header(header: list[str]) -> list[str]:
    names = [h.strip().lower() for h in header]
    problems = []
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    unknown = [h for h in names if h not in COLUMNS]
    doubled = sorted({h for h in names if names.count(h) > 1})
    if missing:
        problems.append(f"header lacks column(s) {', '.join(missing)}")
    if unknown:
        problems.append(f"header has unknown column(s) {', '.join(repr(u) for u in unknown)}")
    if doubled:
        problems.append(f"header names column(s) {', '.join(doubled)} twice")
    if problems:
        problems.append(f"the header must be: {','.join(COLUMNS)}")
    return problems


def _parse_row(values: dict[str, str]) -> tuple[Customer | None, str | None, list[str]]:
    """The row's customer and PIN, or the plain-word problems that keep it out."""
    problems: list[str] = []

    def check(convert: Callable[[str], T], value: str) -> T | None:
        try:
            return convert(value)
        except ValueError as exc:
            problems.append(str(exc))
            return None

    number = check(fields.customer_number, values["customer_number"])
    name = check(fields.name, values["name"])
    written = [p.strip() for p in values["phones"].split(";") if p.strip()]
    if not written:
        problems.append("no phone number (write one or more, separated by ;)")
    phones = [check(fields.phone, p) for p in written]
    postcode = check(fields.postcode, values["postcode"])
    house_number = check(fields.house_number, values["house_number"])
    born = check(fields.birth_date, values["birth_date"]) if values["birth_date"].strip() else None
    pin = check(fields.pin, values["pin"]) if values.get("pin", "").strip() else None
    if problems:
        return None, None, problems
    customer = Customer(number=number, name=name, phones=tuple(dict.fromkeys(phones)), postcode=postcode,
                        house_number=house_number, birth_date=born, has_pin=pin is not None)
    return customer, pin, []


def read_customers(path: str | Path) -> tuple[list[Row], list[Problem]]:
    """Every row of the file checked; ``(rows, [])`` only when nothing is wrong."""
    path = Path(path)
    shown = str(path)
    try:
        text = _read_text(path)
    except OSError as exc:
        return [], [Problem(shown, None, f"cannot read: {exc.strerror or exc}")]
    except ValueError as exc:
        return [], [Problem(shown, None, str(exc))]
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        return [], [Problem(shown, 1, f"header is not valid CSV: {exc}")]
    if header is None:
        return [], [Problem(shown, 1, f"file is empty; the header must be: {','.join(COLUMNS)}")]
    header_problems = _check_header(header)
    if header_problems:
        return [], [Problem(shown, 1, p) for p in header_problems]
    columns = [h.strip().lower() for h in header]

    rows: list[Row] = []
    problems: list[Problem] = []
    first_line: dict[str, int] = {}
    line = reader.line_num
    while True:
        start = line + 1
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            problems.append(Problem(shown, start, f"not valid CSV: {exc}"))
            break                       # the reader cannot find the next row after this
        line = reader.line_num
        if not any(v.strip() for v in record):
            continue                    # blank lines are allowed
        if len(record) != len(columns):
            problems.append(Problem(shown, start, f"has {len(record)} fields, the header {len(columns)}"))
            continue
        customer, pin, row_problems = _parse_row(dict(zip(columns, record)))
        problems.extend(Problem(shown, start, p) for p in row_problems)
        if customer is None:
            continue
        if customer.number in first_line:
            problems.append(Problem(shown, start, f"customer number {customer.number} appears twice "
                                                  f"(first on line {first_line[customer.number]})"))
            continue
        first_line[customer.number] = start
        rows.append(Row(start, customer, pin))
    if not rows and not problems:
        problems.append(Problem(shown, None, "has a header but no customers"))
    return rows, problems


def import_customers(path: str | Path, directory: SqliteDirectory, *, update: bool = False) -> ImportResult:
    """Check the whole file, then write all of its customers in one transaction, or none.

    Without ``update`` a customer number already in the directory is a problem of its row. The
    directory's ``DirectoryUnavailable`` passes through (nothing is written then either).
    """
    rows, problems = read_customers(path)
    result = ImportResult(problems=problems)
    if problems:
        return result
    if not update:
        existing = directory.existing(row.customer.number for row in rows)
        result.problems = [Problem(str(path), row.line, f"customer {row.customer.number} already exists; "
                                                       "use --update to change existing customers")
                           for row in rows if row.customer.number in existing]
        if result.problems:
            return result
    try:
        result.added, result.updated = directory.upsert_many(((r.customer, r.pin) for r in rows), update=update)
    except CustomerExists as exc:       # added by someone else between the check and the write
        line = next(r.line for r in rows if r.customer.number == exc.number)
        result.problems = [Problem(str(path), line, f"{exc}; use --update to change existing customers")]
        return result
    result.pins = sum(1 for row in rows if row.pin is not None)
    return result


def directory_from_csv(path: str | Path) -> SqliteDirectory:
    """A throwaway directory holding just the customers of ``path``, for scripted calls
    (``customers:`` in a scenario file): a run never depends on, or changes, the real directory.
    The SQLite file lives in a private temporary folder removed when the directory is collected
    or the process ends. Raises ``ValueError`` naming every bad row when the file has any."""
    import shutil
    import tempfile
    import weakref

    folder = tempfile.mkdtemp(prefix="voicebot-customers-")
    directory = SqliteDirectory(Path(folder) / "customers.sqlite3")
    weakref.finalize(directory, shutil.rmtree, folder, True)
    result = import_customers(path, directory)
    if result.problems:
        directory.close()
        raise ValueError("\n".join(str(p) for p in result.problems))
    return directory
