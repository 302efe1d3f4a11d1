"""SQL shared by the MySQL and Microsoft SQL Server built-in steps.

Values always travel as bound parameters (``%s`` placeholders, the
``pyformat`` style of both PyMySQL and pymssql). Table and column names
cannot be bound, so they are checked against a strict pattern and quoted;
anything else is refused, never escaped.
"""

from __future__ import annotations

import contextlib
import datetime
import decimal
import re
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from iscore.errors import IscoreError

__all__ = [
    "MSSQL",
    "MYSQL",
    "ConnectionSettings",
    "Dialect",
    "SqlConnectionError",
    "SqlStepError",
    "batched",
    "check_read_query",
    "connect_mssql",
    "connect_mysql",
    "describe_statement",
    "describe_table",
    "insert_rows",
    "insert_statement",
    "plain_rows",
    "quote_identifier",
    "rows_for_insert",
    "select_rows",
    "split_table",
    "to_column",
]

# One part of a table or column name: what both servers accept unquoted.
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")

# First words of statements MySQLSelect and MicrosoftSqlSelect run.
READ_KEYWORDS = frozenset({"SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN"})

# Rows per INSERT batch when the step does not say.
DEFAULT_BATCH_SIZE = 1000

# Comments and blanks before the first word of a query; MySQL adds '#'.
_LEADING_COMMENT = re.compile(r"\s+|--[^\n]*(\n|$)|/\*.*?\*/", re.DOTALL)
_MYSQL_LEADING_COMMENT = re.compile(r"\s+|--[^\n]*(\n|$)|/\*.*?\*/|#[^\n]*(\n|$)", re.DOTALL)


class SqlStepError(IscoreError):
    """A SQL step was given a name, query or rows it cannot use."""

    code = "sql_step_invalid"


class SqlConnectionError(IscoreError):
    """A SQL step could not connect to its database server.

    ``host`` and ``port`` name the server; the driver's error is chained.
    """

    code = "sql_connection_failed"

    def __init__(self, dialect: Dialect, host: str, port: int, reason: object) -> None:
        super().__init__(
            f"{dialect.name} server {host}:{port} could not be reached or refused the login: "
            f"{reason}; check host, port, user, password and database.",
            field="host",
        )
        self.host = host
        self.port = port


@dataclass(frozen=True, slots=True)
class Dialect:
    """How one database server quotes names; ``max_name_length`` in characters."""

    name: str
    open_quote: str
    close_quote: str
    max_name_length: int
    default_schema: str | None


MYSQL = Dialect("MySQL", "`", "`", 64, None)
MSSQL = Dialect("SQL Server", "[", "]", 128, "dbo")


def quote_identifier(name: object, dialect: Dialect, *, field: str = "table") -> str:
    """Return ``name`` (``table`` or ``schema.table``) quoted for ``dialect``.

    Raises ``SqlStepError`` unless each dot-separated part is letters,
    digits, ``_`` and ``$`` and does not start with a digit.
    """
    if not isinstance(name, str) or not name:
        raise SqlStepError(f"Parameter {field!r} must be a name, found {name!r}.", field=field)
    parts = name.split(".")
    for part in parts:
        if len(part) > dialect.max_name_length or not IDENTIFIER.fullmatch(part):
            raise SqlStepError(
                f"Parameter {field!r} is {name!r}, which is not a plain {dialect.name} name: "
                "expected letters, digits, '_' and '$', not starting with a digit, parts "
                "joined by '.'; rename the table or column.",
                field=field,
            )
    return ".".join(f"{dialect.open_quote}{part}{dialect.close_quote}" for part in parts)


def split_table(table: object, dialect: Dialect, database: str) -> tuple[str, str]:
    """Return ``(schema, table)`` of a ``table`` or ``schema.table`` name.

    MySQL's schema is the database; SQL Server's defaults to ``dbo``.
    """
    quote_identifier(table, dialect)
    parts = str(table).split(".")
    if len(parts) > 2:
        raise SqlStepError(
            f"Parameter 'table' is {table!r}; expected 'table' or 'schema.table'.", field="table"
        )
    if len(parts) == 2:
        return parts[0], parts[1]
    return dialect.default_schema or database, parts[0]


def insert_statement(dialect: Dialect, table: str, columns: Sequence[str]) -> str:
    """Return ``INSERT INTO table (columns) VALUES (%s, ...)`` with quoted names."""
    names = ", ".join(quote_identifier(column, dialect, field="columns") for column in columns)
    placeholders = ", ".join(["%s"] * len(columns))
    return f"INSERT INTO {quote_identifier(table, dialect)} ({names}) VALUES ({placeholders})"


def rows_for_insert(
    data: Any, columns: Sequence[str] | None = None
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Turn a dict or a list of dicts into column names and value tuples.

    ``columns`` defaults to the keys of the first row. Every row must hold
    exactly those keys; raises ``SqlStepError`` naming the first row that
    does not, or for data that is not dicts.
    """
    rows = [data] if isinstance(data, dict) else data
    if not isinstance(rows, list | tuple) or not all(isinstance(row, dict) for row in rows):
        raise SqlStepError(
            f"Rows to insert must be a dict or a list of dicts (column name to value), "
            f"found {type(data).__name__}; save such rows in the previous step or set 'rows'.",
            field="rows",
        )
    if not rows:
        return list(columns or []), []

    names = list(columns) if columns else [str(key) for key in rows[0]]
    wanted = set(names)
    values: list[tuple[Any, ...]] = []
    for index, row in enumerate(rows):
        if set(row) != wanted:
            missing = sorted(wanted - set(row))
            extra = sorted(set(map(str, row)) - wanted)
            raise SqlStepError(
                f"Row {index} to insert does not match columns {names}: missing {missing}, "
                f"unexpected {extra}; give every row the same keys or set 'columns'.",
                field="rows",
            )
        values.append(tuple(row[name] for name in names))
    return names, values


def batched(rows: Sequence[tuple[Any, ...]], size: int) -> Iterator[Sequence[tuple[Any, ...]]]:
    """Yield ``rows`` in slices of at most ``size``.

    Raises ``SqlStepError`` for a size below 1.
    """
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise SqlStepError(
            f"Parameter 'batch_size' must be a positive integer, found {size!r}.",
            field="batch_size",
        )
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def check_read_query(query: object, dialect: Dialect) -> str:
    """Return ``query`` if it is one statement that reads rows, else raise.

    The first word after any leading comments must be SELECT, WITH, SHOW,
    DESCRIBE or EXPLAIN, and a semicolon may only end the text, even inside
    quotes or comments: values belong in ``query_params``, so a literal
    never needs one. Raises ``SqlStepError``.
    """
    if not isinstance(query, str) or not query.strip():
        raise SqlStepError("Parameter 'query' must be SQL text.", field="query")
    body = query.strip().removesuffix(";")
    if ";" in body:
        raise SqlStepError(
            "Parameter 'query' holds a ';' before its end, which could start a second "
            "statement; run one query per step and pass values in 'query_params'.",
            field="query",
        )
    leading = _MYSQL_LEADING_COMMENT if dialect is MYSQL else _LEADING_COMMENT
    while match := leading.match(body):
        body = body[match.end() :]
    words = body.lstrip("( \t\r\n").split(None, 1)
    first = words[0].split("(", 1)[0].upper() if words else ""
    if first not in READ_KEYWORDS:
        raise SqlStepError(
            f"Parameter 'query' starts with {first or 'nothing'!r}; this step runs one query "
            f"that reads rows ({', '.join(sorted(READ_KEYWORDS))}); use the Insert step to "
            "write.",
            field="query",
        )
    return query


def plain_rows(
    description: Sequence[Sequence[Any]], rows: Sequence[Sequence[Any]]
) -> list[dict[str, Any]]:
    """Return driver rows as dicts of column name to a value steps can save.

    Decimals and UUIDs become strings (exact), times and durations ISO
    text, bytearrays bytes; datetimes, dates and the rest stay as they are.
    """
    names = [str(column[0]) for column in description]
    return [{name: _plain(value) for name, value in zip(names, row, strict=True)} for row in rows]


def _plain(value: Any) -> Any:
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, datetime.time):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return str(value)
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    return value


@dataclass(frozen=True, slots=True)
class ConnectionSettings:
    """Where and as whom a SQL step connects; ``timeout_s`` bounds the login."""

    host: str
    port: int
    user: str
    password: str
    database: str
    timeout_s: int = 10


def connect_mysql(settings: ConnectionSettings) -> Any:
    """Open a PyMySQL connection (no autocommit, utf8mb4, one statement per call).

    Raises ``SqlConnectionError`` when the server cannot be reached or
    refuses the login.
    """
    import pymysql  # type: ignore[import-untyped]  # PyMySQL ships no type hints

    try:
        return pymysql.connect(
            host=settings.host,
            port=settings.port,
            user=settings.user,
            password=settings.password,
            database=settings.database,
            connect_timeout=settings.timeout_s,
            charset="utf8mb4",
            autocommit=False,
        )
    except pymysql.err.MySQLError as err:
        raise SqlConnectionError(MYSQL, settings.host, settings.port, err) from err


def connect_mssql(settings: ConnectionSettings) -> Any:
    """Open a pymssql connection (no autocommit, UTF-8).

    Raises ``SqlConnectionError`` when the server cannot be reached or
    refuses the login.
    """
    import pymssql

    try:
        return pymssql.connect(
            server=settings.host,
            port=str(settings.port),
            user=settings.user,
            password=settings.password,
            database=settings.database,
            login_timeout=settings.timeout_s,
            charset="UTF-8",
            autocommit=False,
        )
    except pymssql.Error as err:
        raise SqlConnectionError(MSSQL, settings.host, settings.port, err) from err


def insert_rows(
    connection: Any, statement: str, rows: Sequence[tuple[Any, ...]], batch_size: int
) -> int:
    """Insert ``rows`` with ``statement`` in batches, in one transaction.

    Commits once after the last batch and rolls back everything when a
    batch fails, so a run never leaves half its rows behind. Returns the
    number of batches sent.
    """
    batch_count = 0
    try:
        with contextlib.closing(connection.cursor()) as cursor:
            for batch in batched(rows, batch_size):
                cursor.executemany(statement, list(batch))
                batch_count += 1
        connection.commit()
    except BaseException:
        connection.rollback()
        raise
    return batch_count


def select_rows(connection: Any, dialect: Dialect, query: str, params: Any) -> list[dict[str, Any]]:
    """Run read query ``query`` with bound ``params`` and return its rows as dicts.

    ``params`` is a list (``%s`` placeholders), a dict (``%(name)s``) or
    empty. On MySQL the query runs in a read-only transaction, so even a
    function with side effects cannot write. Raises ``SqlStepError`` for a
    query that is not one read statement or parameters of another type.
    """
    check_read_query(query, dialect)
    bound: tuple[Any, ...] | dict[str, Any] | None
    if params in (None, [], {}, ()):
        bound = None
    elif isinstance(params, list | tuple):
        bound = tuple(params)
    elif isinstance(params, dict):
        bound = params
    else:
        raise SqlStepError(
            f"Parameter 'query_params' must be a list or a dict, found {type(params).__name__}.",
            field="query_params",
        )
    with contextlib.closing(connection.cursor()) as cursor:
        if dialect is MYSQL:
            cursor.execute("START TRANSACTION READ ONLY")
        try:
            cursor.execute(query, bound)
            if cursor.description is None:
                return []
            return plain_rows(cursor.description, cursor.fetchall())
        finally:
            connection.rollback()


# Column descriptions come from the standard INFORMATION_SCHEMA views, with
# schema and table bound as parameters.
_DESCRIBE = {
    "MySQL": (
        "SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT, COLUMN_KEY, EXTRA "
        "FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s "
        "ORDER BY ORDINAL_POSITION"
    ),
    "SQL Server": (
        "SELECT COLUMN_NAME, DATA_TYPE, IS_NULLABLE, COLUMN_DEFAULT, CHARACTER_MAXIMUM_LENGTH, "
        "NUMERIC_PRECISION, NUMERIC_SCALE FROM INFORMATION_SCHEMA.COLUMNS "
        "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION"
    ),
}


def describe_statement(dialect: Dialect) -> str:
    """Return the query listing a table's columns; bind ``(schema, table)``."""
    return _DESCRIBE[dialect.name]


def describe_table(
    connection: Any, dialect: Dialect, schema: str, table: str
) -> list[dict[str, Any]]:
    """Return the columns of ``schema.table``: name, type, nullable, default ...

    Raises ``SqlStepError`` when the table does not exist or has no columns
    the user may see.
    """
    with contextlib.closing(connection.cursor()) as cursor:
        cursor.execute(describe_statement(dialect), (schema, table))
        rows = cursor.fetchall()
    connection.rollback()
    if not rows:
        raise SqlStepError(
            f"Table {table!r} was not found in {dialect.name} schema {schema!r}, or the user "
            "may not see its columns; check 'table' and 'database'.",
            field="table",
        )
    return [to_column(dialect, row) for row in rows]


def to_column(dialect: Dialect, row: Sequence[Any]) -> dict[str, Any]:
    """Return one INFORMATION_SCHEMA row of ``describe_statement`` as a column dict."""
    name, type_name, nullable, default = (_plain(value) for value in row[:4])
    column = {"name": name, "type": type_name, "nullable": nullable == "YES", "default": default}
    if dialect is MYSQL:
        column["key"], column["extra"] = row[4], row[5]
        return column

    length, precision, scale = row[4:7]
    if length is not None:
        column["type"] = f"{type_name}({'max' if length == -1 else length})"
    elif type_name in ("decimal", "numeric") and precision is not None:
        column["type"] = f"{type_name}({precision},{scale})"
    return column
