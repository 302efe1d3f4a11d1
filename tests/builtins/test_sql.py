"""SQL helpers of the MySQL and SQL Server steps, and what needs no server.

No SQL Server runs here: the MicrosoftSql* steps are proved up to the
driver (statements, names, rows, connection failure); the MySQL steps run
against MariaDB in tests/integration/test_builtins.py.
"""

from __future__ import annotations

import datetime
import decimal
from typing import Any

import pytest
from iscore.builtins.catalog import step_source
from iscore.builtins.sql import (
    MSSQL,
    MYSQL,
    SqlStepError,
    batched,
    check_read_query,
    describe_statement,
    insert_statement,
    plain_rows,
    quote_identifier,
    rows_for_insert,
    split_table,
    to_column,
)
from iscore.runtime.harness import run_step


def test_insert_statement_quotes_names_and_binds_every_value() -> None:
    assert insert_statement(MYSQL, "test.devices", ["id", "name"]) == (
        "INSERT INTO `test`.`devices` (`id`, `name`) VALUES (%s, %s)"
    )
    assert insert_statement(MSSQL, "dbo.devices", ["id"]) == (
        "INSERT INTO [dbo].[devices] ([id]) VALUES (%s)"
    )


@pytest.mark.parametrize(
    "name", ["devices; DROP TABLE x", "dev`ices", "[devices]", "1table", "a..b", "", "a b"]
)
def test_names_that_need_escaping_are_refused(name: str) -> None:
    with pytest.raises(SqlStepError, match=r"not a plain|must be a name"):
        quote_identifier(name, MYSQL)


def test_rows_must_all_have_the_same_columns() -> None:
    with pytest.raises(SqlStepError, match="Row 1") as caught:
        rows_for_insert([{"id": 1, "name": "a"}, {"id": 2, "nom": "b"}])

    assert "missing ['name']" in str(caught.value)


def test_rows_follow_the_given_column_order() -> None:
    columns, rows = rows_for_insert({"name": "a", "id": 1}, ["id", "name"])

    assert columns == ["id", "name"]
    assert rows == [(1, "a")]


def test_rows_that_are_not_dicts_are_refused() -> None:
    with pytest.raises(SqlStepError, match="dict or a list of dicts"):
        rows_for_insert([1, 2])


def test_batches_split_rows_and_refuse_a_size_below_one() -> None:
    rows = [(n,) for n in range(5)]

    assert [len(batch) for batch in batched(rows, 2)] == [2, 2, 1]
    with pytest.raises(SqlStepError, match="batch_size"):
        list(batched(rows, 0))


@pytest.mark.parametrize(
    "query",
    [
        "SELECT * FROM devices WHERE id = %s",
        "  -- newest first\n select id from devices;",
        "/* report */ WITH x AS (SELECT 1) SELECT * FROM x",
        "(SELECT 1)",
    ],
)
def test_read_queries_are_accepted(query: str) -> None:
    assert check_read_query(query, MSSQL) == query


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("DELETE FROM devices", "starts with 'DELETE'"),
        ("SELECT 1; DROP TABLE devices", "';' before its end"),
        ("SELECT 1 -- ; DROP TABLE devices\n", "';' before its end"),
        ("SELECT ';' AS x; SELECT 2", "';' before its end"),
        ("# comment\nDELETE FROM x", "starts with"),
    ],
)
def test_writes_and_several_statements_are_refused(query: str, message: str) -> None:
    with pytest.raises(SqlStepError, match=message):
        check_read_query(query, MSSQL)


def test_mysql_hash_comments_are_skipped_before_the_first_word() -> None:
    assert check_read_query("# latest\nSELECT 1", MYSQL)


def test_split_table_uses_the_dialect_default_schema() -> None:
    assert split_table("devices", MSSQL, "inventory") == ("dbo", "devices")
    assert split_table("devices", MYSQL, "inventory") == ("inventory", "devices")
    assert split_table("sales.orders", MSSQL, "inventory") == ("sales", "orders")


def test_describe_binds_schema_and_table_as_parameters() -> None:
    for dialect in (MYSQL, MSSQL):
        statement = describe_statement(dialect)
        assert statement.count("%s") == 2
        assert "INFORMATION_SCHEMA.COLUMNS" in statement.upper()


def test_sql_server_column_types_carry_length_and_precision() -> None:
    text = to_column(MSSQL, ("name", "nvarchar", "YES", None, 50, None, None))
    blob = to_column(MSSQL, ("notes", "nvarchar", "NO", None, -1, None, None))
    money = to_column(MSSQL, ("price", "decimal", "NO", "((0))", None, 10, 2))

    assert text == {"name": "name", "type": "nvarchar(50)", "nullable": True, "default": None}
    assert blob["type"] == "nvarchar(max)"
    assert money["type"] == "decimal(10,2)"


def test_row_values_become_values_steps_can_save() -> None:
    description = [("price",), ("at",), ("since",), ("raw",)]
    row = (
        decimal.Decimal("1.10"),
        datetime.time(8, 30),
        datetime.timedelta(hours=2),
        bytearray(b"x"),
    )

    assert plain_rows(description, [row]) == [
        {"price": "1.10", "at": "08:30:00", "since": "2:00:00", "raw": b"x"}
    ]


def run_mssql(file: str, parameters: dict[str, Any]) -> Any:
    connection = {
        "host": "127.0.0.1",
        "port": 1,
        "user": "sa",
        "database": "test",
        "connect_timeout": 2,
    }
    return run_step(source=step_source(file), file=file, parameters={**connection, **parameters})


def test_sql_server_insert_refuses_a_bad_table_before_connecting() -> None:
    result = run_mssql("MicrosoftSqlInsert", {"table": "x; DROP TABLE y", "rows": [{"id": 1}]})

    assert result.error_type == "SqlStepError"


def test_sql_server_select_refuses_a_write_before_connecting() -> None:
    result = run_mssql("MicrosoftSqlSelect", {"query": "DROP TABLE devices"})

    assert result.error_type == "SqlStepError"


def test_sql_server_steps_report_an_unreachable_server() -> None:
    result = run_mssql("MicrosoftSqlDescribe", {"table": "devices"})

    assert result.error_type == "SqlConnectionError"
    assert "127.0.0.1:1" in (result.error or "")
