"""MicrosoftSqlSelect: run one parameterized query and pass its rows on.

Built-in step shipped with Integration Service (docs/builtin-steps.md).
"""

from ipaascore.BaseStep import BaseStep
from iscore.builtins.sql import (
    MSSQL,
    ConnectionSettings,
    check_read_query,
    connect_mssql,
    select_rows,
)

HOST = "host"
PORT = "port"
USER = "user"
PASSWORD = "password"
DATABASE = "database"
CONNECT_TIMEOUT = "connect_timeout"
QUERY = "query"
QUERY_PARAMS = "query_params"


class MicrosoftSqlSelect(BaseStep):
    def __init__(self):
        self.friendly_name = "SQL Server Select"
        self.description = (
            "Runs one read query with bound parameters on SQL Server (pymssql) and "
            "saves its rows, a list of dicts, for the next step."
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
            name=QUERY,
            description="one SELECT (or WITH, SHOW, DESCRIBE, EXPLAIN) query; write %s "
            "where a value goes.",
            sample_value="SELECT id, name FROM devices WHERE site = %s",
            default_value=None,
            required=True,
        )
        self.new_step_parameter(
            name=QUERY_PARAMS,
            description="values bound to the query's %s placeholders (a list) or "
            "%(name)s placeholders (a dict).",
            sample_value=["${site}"],
            default_value=[],
        )

    def execute(self):
        query = check_read_query(self.get_parameter(QUERY), MSSQL)
        params = self.get_parameter(QUERY_PARAMS)
        connection = self.connect()
        try:
            rows = select_rows(connection, MSSQL, query, params)
        finally:
            connection.close()
        self.logger.info("Query returned %d rows.", len(rows))
        self.save_data_for_next_step(rows)

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
