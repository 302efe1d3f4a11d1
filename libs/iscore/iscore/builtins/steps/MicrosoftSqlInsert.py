"""MicrosoftSqlInsert: insert rows in batches with a parameterized statement.

Built-in step shipped with Integration Service (docs/builtin-steps.md).
"""

from ipaascore.BaseStep import BaseStep
from iscore.builtins.sql import (
    DEFAULT_BATCH_SIZE,
    MSSQL,
    ConnectionSettings,
    connect_mssql,
    insert_rows,
    insert_statement,
    rows_for_insert,
)

HOST = "host"
PORT = "port"
USER = "user"
PASSWORD = "password"
DATABASE = "database"
CONNECT_TIMEOUT = "connect_timeout"
TABLE = "table"
ROWS = "rows"
COLUMNS = "columns"
BATCH_SIZE = "batch_size"


class MicrosoftSqlInsert(BaseStep):
    def __init__(self):
        self.friendly_name = "SQL Server Insert"
        self.description = (
            "Inserts a list of dicts into a SQL Server table (pymssql) in batches "
            "of one parameterized INSERT, committed together, and saves the counts."
        )
        self.version = "1.0.0"
        self.new_step_parameter(
            name=HOST,
            description="SQL Server host name or address.",
            sample_value="${config.mssql_host}",
            default_value=None,
            required=True,
        )
        self.new_step_parameter(
            name=PORT,
            description="SQL Server TCP port.",
            sample_value=1433,
            default_value=1433,
        )
        self.new_step_parameter(
            name=USER,
            description="user to log in as.",
            sample_value="${config.mssql_user}",
            default_value=None,
            required=True,
        )
        self.new_step_parameter(
            name=PASSWORD,
            description="password of the user; keep it in an encrypted configuration variable.",
            sample_value="${config.mssql_password}",
            default_value="",
        )
        self.new_step_parameter(
            name=DATABASE,
            description="database to use.",
            sample_value="inventory",
            default_value=None,
            required=True,
        )
        self.new_step_parameter(
            name=CONNECT_TIMEOUT,
            description="seconds to wait for the connection and login.",
            sample_value=10,
            default_value=10,
        )
        self.new_step_parameter(
            name=TABLE,
            description="table to insert into ('table' or 'schema.table', schema dbo by default).",
            sample_value="dbo.devices",
            default_value=None,
            required=True,
        )
        self.new_step_parameter(
            name=ROWS,
            description="rows to insert, a list of dicts of column to value; by default "
            "the data of the previous steps.",
            sample_value=[{"id": 1, "name": "router-1"}],
            default_value=None,
        )
        self.new_step_parameter(
            name=COLUMNS,
            description="columns to insert, in order; by default the keys of the first row.",
            sample_value=["id", "name"],
            default_value=None,
        )
        self.new_step_parameter(
            name=BATCH_SIZE,
            description="rows sent per INSERT batch; all batches commit together.",
            sample_value=DEFAULT_BATCH_SIZE,
            default_value=DEFAULT_BATCH_SIZE,
        )

    def execute(self):
        table = self.get_parameter(TABLE)
        data = self.get_parameter(ROWS)
        if data is None:
            data = self.join_previous_step_data()
        columns, rows = rows_for_insert(data, self.get_parameter(COLUMNS))
        statement = insert_statement(MSSQL, table, columns)
        batch_count = 0
        if rows:
            connection = self.connect()
            try:
                batch_count = insert_rows(
                    connection, statement, rows, self.get_parameter(BATCH_SIZE)
                )
            finally:
                connection.close()
        self.logger.info("Inserted %d rows into %s in %d batches.", len(rows), table, batch_count)
        self.save_data_for_next_step(
            {"table": table, "inserted_count": len(rows), "batch_count": batch_count}
        )

    def connect(self):
        """Open a connection with the step's connection parameters."""
        return connect_mssql(
            ConnectionSettings(
                host=str(self.get_parameter(HOST)),
                port=int(self.get_parameter(PORT)),
                user=str(self.get_parameter(USER)),
                password=str(self.get_parameter(PASSWORD) or ""),
                database=str(self.get_parameter(DATABASE)),
                timeout_s=int(self.get_parameter(CONNECT_TIMEOUT)),
            )
        )
