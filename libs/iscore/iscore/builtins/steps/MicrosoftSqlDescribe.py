"""MicrosoftSqlDescribe: list a table's columns and their types.

Built-in step shipped with Integration Service (docs/builtin-steps.md).
"""

from ipaascore.BaseStep import BaseStep
from iscore.builtins.sql import (
    MSSQL,
    ConnectionSettings,
    connect_mssql,
    describe_table,
    split_table,
)

HOST = "host"
PORT = "port"
USER = "user"
PASSWORD = "password"
DATABASE = "database"
CONNECT_TIMEOUT = "connect_timeout"
TABLE = "table"


class MicrosoftSqlDescribe(BaseStep):
    def __init__(self):
        self.friendly_name = "SQL Server Describe"
        self.description = (
            "Saves the columns of a SQL Server table (pymssql): name, type, "
            "nullable and default, read from INFORMATION_SCHEMA."
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
            description="table to describe ('table' or 'schema.table', schema dbo by default).",
            sample_value="dbo.devices",
            default_value=None,
            required=True,
        )

    def execute(self):
        schema, table = split_table(
            self.get_parameter(TABLE), MSSQL, str(self.get_parameter(DATABASE))
        )
        connection = self.connect()
        try:
            columns = describe_table(connection, MSSQL, schema, table)
        finally:
            connection.close()
        self.logger.info("Table %s.%s has %d columns.", schema, table, len(columns))
        self.save_data_for_next_step(columns)

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
