"""QueryGQL: send a GraphQL query with variables and pass its data on.

Built-in step shipped with Integration Service (docs/builtin-steps.md).
"""

from ipaascore.BaseStep import BaseStep
from iscore.builtins.graphql import graphql_body, graphql_data
from iscore.builtins.outbound import OutboundPolicy, OutboundRequest, send

PREFIX_URL = "prefix_url"
RELATIVE_URL = "relative_url"
QUERY = "query"
VARIABLES = "variables"
OPERATION_NAME = "operation_name"
HEADERS = "headers"
AUTH = "auth"
TIMEOUT = "timeout"
VERIFY = "verify"


class QueryGQL(BaseStep):
    def __init__(self):
        self.friendly_name = "Query GraphQL"
        self.description = (
            "Sends a GraphQL query with variables and saves the response's data for the "
            "next step. Errors reported by the server fail the step with their messages."
        )
        self.version = "1.0.0"
        self.new_step_parameter(
            name=PREFIX_URL,
            description="used with relative_url to create the GraphQL endpoint URL.",
            sample_value="https://10.2.11.253",
            default_value=None,
            required=True,
        )
        self.new_step_parameter(
            name=RELATIVE_URL,
            description="appended to prefix_url.",
            sample_value="/gql",
            default_value="",
        )
        self.new_step_parameter(
            name=QUERY,
            description="the GraphQL query or mutation text.",
            sample_value="query Device($id: ID!) { device(id: $id) { id name } }",
            default_value=None,
            required=True,
        )
        self.new_step_parameter(
            name=VARIABLES,
            description="GraphQL variables, a dict of name to value.",
            sample_value={"id": "${device_id}"},
            default_value={},
        )
        self.new_step_parameter(
            name=OPERATION_NAME,
            description="which operation of the query text to run, when it holds several.",
            sample_value="Device",
            default_value=None,
        )
        self.new_step_parameter(
            name=HEADERS,
            description="request headers, a dict of name to value.",
            sample_value={"Authorization": "Bearer ${config.token}"},
            default_value={},
        )
        self.new_step_parameter(
            name=AUTH,
            description="basic authentication as [user, password].",
            sample_value=["${config.user}", "${config.password}"],
            default_value=None,
        )
        self.new_step_parameter(
            name=TIMEOUT,
            description="seconds to wait for the connection and for each read.",
            sample_value=30,
            default_value=30,
        )
        self.new_step_parameter(
            name=VERIFY,
            description="check TLS certificates (true), skip the check (false) or the "
            "path of a CA bundle file.",
            sample_value=True,
            default_value=True,
        )

    def execute(self):
        url = str(self.get_parameter(PREFIX_URL)).rstrip("/")
        relative_url = self.get_parameter(RELATIVE_URL)
        if relative_url:
            url = url + "/" + str(relative_url).lstrip("/")
        auth = self.get_parameter(AUTH)
        headers = {str(k): str(v) for k, v in (self.get_parameter(HEADERS) or {}).items()}
        headers.setdefault("Accept", "application/json")
        request = OutboundRequest(
            method="POST",
            url=url,
            headers=headers,
            json=graphql_body(
                self.get_parameter(QUERY),
                self.get_parameter(VARIABLES),
                self.get_parameter(OPERATION_NAME),
            ),
            auth=(str(auth[0]), str(auth[1])) if auth else None,
            timeout_s=float(self.get_parameter(TIMEOUT)),
            verify=self.get_parameter(VERIFY),
        )
        response = send(request, policy=OutboundPolicy.for_step(self))
        data = graphql_data(response, url)
        self.logger.info("GraphQL query to %s answered HTTP %d.", url, response.status_code)
        self.save_data_for_next_step(data)
