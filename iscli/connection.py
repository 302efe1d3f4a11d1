"""Where the gateway is and who we are: flags, environment, config file.

Each value is taken from the first source that sets it: the command-line
flag (-H, -P, -U, -p), the ``ISCLI_*`` environment variables, the config
file (``ISCLI_CONFIG``, else ``$XDG_CONFIG_HOME/iscli/config.toml``), then
what a ``make up`` system uses (``IS_HTTP_PORT``, ``IS_ADMIN_PASSWORD``, the
password the embedded launcher saved in its data directory), then the
defaults below. Against ``make up`` no flag is needed (MANUAL-NOTES 21).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from iscli.errors import ConfigError

DEFAULT_HOST = "127.0.0.1"
# `make up` serves plain HTTP on this port.
DEFAULT_PORT = 8080
# Port the manual names as the appliance default; it implies https.
HTTPS_PORT = 443
DEFAULT_USER = "isadmin"
API_PREFIX = "/api/v1"
# File the embedded launcher writes a generated admin password to.
ADMIN_PASSWORD_FILE = "admin-password"
CONFIG_KEYS = frozenset({"host", "port", "user", "password", "token", "scheme", "verify"})


@dataclass(frozen=True, slots=True)
class Connection:
    """Resolved gateway address and credentials."""

    scheme: str
    host: str
    port: int
    user: str
    password: str | None
    verify: bool
    # An API token (POST /tokens); when set it is sent instead of the password.
    token: str | None = None

    @property
    def base_url(self) -> str:
        """The API root, for example ``http://127.0.0.1:8080/api/v1``."""
        return f"{self.scheme}://{self.host}:{self.port}{API_PREFIX}"


def config_path(env: Mapping[str, str]) -> Path:
    """The config file iscli reads (it need not exist)."""
    if env.get("ISCLI_CONFIG"):
        return Path(env["ISCLI_CONFIG"]).expanduser()
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "iscli" / "config.toml"


def load_config(path: Path, *, required: bool) -> dict[str, Any]:
    """Read the TOML config file; a missing file is empty unless ``required``."""
    if not path.exists():
        if required:
            raise ConfigError(
                f"Config file '{path}' named by ISCLI_CONFIG does not exist.",
                hint="Create it or unset ISCLI_CONFIG.",
            )
        return {}
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise ConfigError(f"Config file '{path}' cannot be read: {err}.") from err
    unknown = sorted(set(document) - CONFIG_KEYS)
    if unknown:
        raise ConfigError(
            f"Config file '{path}' has unknown key {unknown[0]!r}; "
            f"expected only {', '.join(sorted(CONFIG_KEYS))}."
        )
    return document


def resolve_connection(
    *,
    host: str | None = None,
    port: int | None = None,
    user: str | None = None,
    password: str | None = None,
    token: str | None = None,
    insecure: bool = False,
    env: Mapping[str, str] | None = None,
) -> Connection:
    """Combine flags (the keyword arguments), environment and config file.

    A token (``--token``, ``ISCLI_TOKEN``, config ``token``) is used unless
    a password is given on the command line.
    """
    env = os.environ if env is None else env
    config = load_config(config_path(env), required=bool(env.get("ISCLI_CONFIG")))
    raw_host = _first(host, env.get("ISCLI_HOST"), config.get("host"), DEFAULT_HOST)
    scheme, host_name, url_port = _split_host(str(raw_host))
    resolved_port = _port(
        _first(
            port,
            url_port,
            env.get("ISCLI_PORT"),
            config.get("port"),
            env.get("IS_HTTP_PORT"),
            DEFAULT_PORT,
        )
    )
    scheme = _first(
        scheme,
        env.get("ISCLI_SCHEME"),
        config.get("scheme"),
        "https" if resolved_port == HTTPS_PORT else "http",
    )
    if scheme not in ("http", "https"):
        raise ConfigError(f"Scheme {scheme!r} is not supported; use 'http' or 'https'.")
    verify = not insecure and _flag(_first(env.get("ISCLI_VERIFY"), config.get("verify"), True))
    return Connection(
        scheme=str(scheme),
        host=host_name,
        port=resolved_port,
        user=str(_first(user, env.get("ISCLI_USER"), config.get("user"), DEFAULT_USER)),
        password=_first(
            password,
            env.get("ISCLI_PASSWORD"),
            config.get("password"),
            env.get("IS_ADMIN_PASSWORD"),
            _saved_admin_password(env),
        ),
        verify=verify,
        token=None if password else _first(token, env.get("ISCLI_TOKEN"), config.get("token")),
    )


def _first(*values: Any) -> Any:
    for value in values:
        if value is not None and value != "":
            return value
    return None


def _split_host(raw: str) -> tuple[str | None, str, int | None]:
    """Accept ``host``, ``host:port`` or a URL such as ``https://host:8443``."""
    if "://" not in raw:
        raw = f"//{raw}"
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError as err:
        raise ConfigError(f"Host {raw.lstrip('/')!r} is not a host name or URL: {err}.") from err
    if not parts.hostname:
        raise ConfigError(f"Host {raw.lstrip('/')!r} names no host; use a name or IP address.")
    return parts.scheme or None, parts.hostname, port


def _port(value: Any) -> int:
    try:
        port = int(value)
    except (TypeError, ValueError):
        port = -1
    if not 0 < port < 65536:
        raise ConfigError(f"Port {value!r} is not a TCP port; use a number from 1 to 65535.")
    return port


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"Value {value!r} for 'verify' is not a boolean; use true or false.")


def _saved_admin_password(env: Mapping[str, str]) -> str | None:
    """The password ``make up`` generated, if its data directory is at hand."""
    path = Path(env.get("IS_DATA_DIR") or ".isdata") / ADMIN_PASSWORD_FILE
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None
