"""MySQLDescribe: list a table's columns and their types.

Built-in step shipped with Integration Service (docs/builtin-steps.md).
"""

from ipaascore.BaseStep import BaseStep
from iscore.builtins.sql import (
    MYSQL,
    ConnectionSettings,
    connect_mysql,
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


class MySQLDescribe(BaseStep):
    def __init__(self):
        self.friendly_name = "MySQL Describe"
        self.description = (
            "Saves the columns of a MySQL table (PyMySQL): name, type, nullable and "
            "default, read from INFORMATION_SCHEMA."
        )
        self.version = "1.0.0"
        self.new_step_parameter(
            name=HOST,
            description="MySQL server host name or address.",
            sample_value="${config.mysql_host}",
            default_value=None,
            required=True,
        )
        self.new_step_parameter(
            name=PORT,
            description="MySQL server TCP port.",
            sample_value=3306,
            default_value=3306,
        )
        self.new_step_parameter(
            name=USER,
            description="user to log in as.",
            sample_value="${config.mysql_user}",
            default_value=None,
            required=True,
        )
        self.new_step_parameter(
            name=PASSWORD,
            description="password of the user; keep it in an encrypted configuration variable.",
            sample_value="${config.mysql_password}",
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
            description="table to describe ('table' or 'database.table').",
            sample_value="devices",
            default_value=None,
            required=True,
        )

    def execute(self):
        schema, table = split_table(
            self.get_parameter(TABLE), MYSQL, str(self.get_parameter(DATABASE))
        )
        connection = self.connect()
        try:
            columns = describe_table(connection, MYSQL, schema, table)
        finally:
            connection.close()
        self.logger.info("Table %s.%s has %d columns.", schema, table, len(columns))
        self.save_data_for_next_step(columns)

    def connect(self):
        """Open a connection with the step's connection parameters."""
        return connect_mysql(
            ConnectionSettings(
                host=str(self.get_parameter(HOST)),
                port=int(self.get_parameter(PORT)),
                user=str(self.get_parameter(USER)),
                password=str(self.get_parameter(PASSWORD) or ""),
                database=str(self.get_parameter(DATABASE)),
                timeout_s=int(self.get_parameter(CONNECT_TIMEOUT)),
            )
        )
