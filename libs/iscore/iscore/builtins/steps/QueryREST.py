"""QueryREST: send REST requests and pass the responses to the next steps.

Built-in step shipped with Integration Service (docs/builtin-steps.md).
"""

from ipaascommon import ipaas_exceptions
from ipaascore.BaseStep import BaseStep
from iscore.builtins.outbound import (
    OutboundPolicy,
    OutboundRequest,
    check_status,
    response_data,
    send,
)

PREFIX_URL = "prefix_url"
RELATIVE_URL = "relative_url"
METHOD = "method"
PAYLOAD = "payload"
HEADERS = "headers"
PARAMS = "params"
AUTH = "auth"
TIMEOUT = "timeout"
VERIFY = "verify"
FOLLOW_REDIRECTS = "follow_redirects"
RETURN_HEADERS = "return_headers"


class QueryREST(BaseStep):
    def __init__(self):
        self.friendly_name = "Query REST"
        self.description = (
            "Sends a REST request and saves the response data and the selected response "
            "headers for the next step. With a list or dict from previous steps, builds "
            "relative_url from each item and sends one request per item."
        )
        self.version = "1.0.0"
        self.new_step_parameter(
            name=PREFIX_URL,
            description="used with relative_url to create the full URL.",
            sample_value="http://10.2.11.253",
            default_value=None,
            required=True,
        )
        self.new_step_parameter(
            name=RELATIVE_URL,
            description="appended to prefix_url; may use ${name} of the input data items.",
            sample_value="/api/device/${device_id}",
            default_value="",
        )
        self.new_step_parameter(
            name=METHOD, description="HTTP method to perform", sample_value="GET", required=True
        )
        self.new_step_parameter(
            name=PAYLOAD,
            description="request body: a dict or list is sent as JSON, a string as it is.",
            sample_value={"name": "device"},
            default_value=None,
        )
        self.new_step_parameter(
            name=HEADERS,
            description="request headers, a dict of name to value.",
            sample_value={"Accept": "application/json"},
            default_value={},
        )
        self.new_step_parameter(
            name=PARAMS,
            description="query string parameters, a dict of name to value.",
            sample_value={"limit": 100},
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
        self.new_step_parameter(
            name=FOLLOW_REDIRECTS,
            description="follow HTTP redirects, each checked like the first URL.",
            sample_value=True,
            default_value=True,
        )
        self.new_step_parameter(
            name=RETURN_HEADERS,
            description="names of response headers to include in the saved data.",
            sample_value=["Content-Type"],
            default_value=[],
        )

    def execute(self):
        self.policy = OutboundPolicy.for_step(self)
        if self.get_available_previous_step_input_positions():
            self.query_with_url_generated_from_input()
            return
        relative_url = self.get_parameter(RELATIVE_URL)
        self.save_data_for_next_step(self.process_REST_command(relative_url))

    def query_with_url_generated_from_input(self):
        """Send one request per input item, building relative_url from the item.

        A list input gives one request per item and saves a list of results;
        a dict input gives one request and saves its result.
        """
        input_data = self.join_previous_step_data()
        if type(input_data) is list:
            results = []
            for input_d in input_data:
                lookup = input_d if type(input_d) is dict else {"item": input_d}
                relative_url = self.get_parameter(RELATIVE_URL, lookup)
                results.append(self.process_REST_command(relative_url, lookup))
            self.logger.info("Sent %d requests built from the input data.", len(results))
            self.save_data_for_next_step(results)
        elif type(input_data) is dict:
            relative_url = self.get_parameter(RELATIVE_URL, input_data)
            self.save_data_for_next_step(self.process_REST_command(relative_url, input_data))
        else:
            raise ipaas_exceptions.StepFailedException(
                "QueryREST builds relative URLs from a list or a dict of input data, not from "
                f"{type(input_data).__name__}; save a list or dict in the previous step."
            )

    def process_REST_command(self, relative_url, lookup_data=None):
        """Send one request and return its status, URL, data and chosen headers."""
        url = str(self.get_parameter(PREFIX_URL, lookup_data)).rstrip("/")
        if relative_url:
            url = url + "/" + str(relative_url).lstrip("/")
        payload = self.get_parameter(PAYLOAD, lookup_data)
        auth = self.get_parameter(AUTH, lookup_data)
        request = OutboundRequest(
            method=str(self.get_parameter(METHOD, lookup_data)),
            url=url,
            headers={str(k): str(v) for k, v in (self.get_parameter(HEADERS) or {}).items()},
            params=self.get_parameter(PARAMS, lookup_data) or {},
            json=payload if isinstance(payload, dict | list) else None,
            content=payload if isinstance(payload, str | bytes) else None,
            auth=(str(auth[0]), str(auth[1])) if auth else None,
            timeout_s=float(self.get_parameter(TIMEOUT)),
            verify=self.get_parameter(VERIFY),
            follow_redirects=bool(self.get_parameter(FOLLOW_REDIRECTS)),
        )
        response = send(request, policy=self.policy)
        check_status(response, url)
        self.logger.info("%s %s answered HTTP %d.", request.method, url, response.status_code)
        wanted = self.get_parameter(RETURN_HEADERS) or []
        return {
            "status_code": response.status_code,
            "url": url,
            "data": response_data(response),
            "headers": {
                name: response.headers[name] for name in wanted if name in response.headers
            },
        }
