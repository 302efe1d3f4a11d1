"""Errors iscli reports, and the exit code each one ends the process with.

Every failure becomes one line on stderr plus an optional hint line
(STYLE.md, "Errors"); scripts branch on the exit code, documented in
docs/iscli.md.
"""

from __future__ import annotations

# Exit codes. 2 is also what argparse uses for a malformed command line.
EXIT_OK = 0
# Something failed that has no more specific code (a 5xx answer included).
EXIT_ERROR = 1
EXIT_USAGE = 2
# A local file is missing, unreadable or invalid; nothing was sent.
EXIT_INVALID_FILE = 3
# The gateway answered 404: the step, application, task ... does not exist.
EXIT_NOT_FOUND = 4
# The gateway refused the credentials (401 or 403).
EXIT_AUTH = 5
# The gateway could not be reached, or answered 503 (a backing service is down).
EXIT_UNAVAILABLE = 6
# The gateway refused the request as invalid (400, 409, other 4xx).
EXIT_REJECTED = 7
# `run --wait` or `replay --wait`: the run ended in FAILURE or REVOKED.
EXIT_RUN_FAILED = 8
# `--wait` gave up before the run reached a final state.
EXIT_TIMEOUT = 9


class IscliError(Exception):
    """Base of every error iscli reports; carries its exit code and a hint."""

    code = "error"
    exit_code = EXIT_ERROR

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class UsageError(IscliError):
    """The command line asks for something iscli cannot do as written."""

    code = "usage"
    exit_code = EXIT_USAGE


class LocalFileError(IscliError):
    """A file or directory given on the command line cannot be used."""

    code = "invalid_file"
    exit_code = EXIT_INVALID_FILE

    def __init__(self, message: str, *, path: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.path = path


class ConfigError(IscliError):
    """The iscli configuration file or environment holds an unusable value."""

    code = "invalid_config"
    exit_code = EXIT_USAGE


class CredentialsMissingError(IscliError):
    """Neither a password nor an API token was found in any source."""

    code = "no_password"
    exit_code = EXIT_AUTH

    def __init__(self, user: str) -> None:
        super().__init__(
            f"No password or API token is set for user {user!r}.",
            hint="Pass -p or --token, set ISCLI_PASSWORD or ISCLI_TOKEN, or put password "
            "or token in ~/.config/iscli/config.toml.",
        )
        self.user = user


class GatewayUnreachableError(IscliError):
    """No HTTP answer came back from the gateway."""

    code = "unreachable"
    exit_code = EXIT_UNAVAILABLE

    def __init__(self, message: str, *, url: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.url = url


class ApiError(IscliError):
    """The gateway answered with an error status; ``code`` is the server's."""

    def __init__(
        self, message: str, *, status: int, code: str, field: str | None, hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.code = code
        self.field = field
        self.exit_code = exit_code_for_status(status)


class RunFailedError(IscliError):
    """A run that iscli waited for ended in FAILURE or REVOKED."""

    code = "run_failed"
    exit_code = EXIT_RUN_FAILED

    def __init__(self, message: str, *, run_id: str, state: str) -> None:
        super().__init__(message, hint=f"See the steps' logs with: iscli tasks {run_id}")
        self.run_id = run_id
        self.state = state


class WaitTimeoutError(IscliError):
    """A run was still active when ``--timeout`` ran out."""

    code = "wait_timeout"
    exit_code = EXIT_TIMEOUT

    def __init__(self, message: str, *, run_id: str) -> None:
        super().__init__(message, hint=f"Follow it later with: iscli tasks {run_id}")
        self.run_id = run_id


def exit_code_for_status(status: int) -> int:
    """The exit code for an HTTP error status from the gateway."""
    if status == 404:
        return EXIT_NOT_FOUND
    if status in (401, 403):
        return EXIT_AUTH
    if status == 503:
        return EXIT_UNAVAILABLE
    if 400 <= status < 500:
        return EXIT_REJECTED
    return EXIT_ERROR
