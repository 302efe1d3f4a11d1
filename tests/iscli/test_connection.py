"""Where iscli finds the gateway and the credentials."""

from __future__ import annotations

from pathlib import Path

import pytest

from iscli.connection import resolve_connection
from iscli.errors import ConfigError


@pytest.fixture
def home(tmp_path: Path) -> dict[str, str]:
    """An environment with an empty config home and no data directory."""
    return {"XDG_CONFIG_HOME": str(tmp_path / "config"), "IS_DATA_DIR": str(tmp_path / "none")}


def write_config(env: dict[str, str], text: str) -> None:
    path = Path(env["XDG_CONFIG_HOME"]) / "iscli" / "config.toml"
    path.parent.mkdir(parents=True)
    path.write_text(text)


def test_defaults_point_at_make_up(home: dict[str, str]) -> None:
    connection = resolve_connection(env=home)

    assert connection.base_url == "http://127.0.0.1:8080/api/v1"
    assert connection.user == "isadmin"
    assert connection.password is None


def test_make_up_port_and_saved_password_are_used_without_flags(
    home: dict[str, str], tmp_path: Path
) -> None:
    data = tmp_path / "isdata"
    data.mkdir()
    (data / "admin-password").write_text("generated-secret\n")

    connection = resolve_connection(env={**home, "IS_DATA_DIR": str(data), "IS_HTTP_PORT": "9090"})

    assert connection.base_url == "http://127.0.0.1:9090/api/v1"
    assert connection.password == "generated-secret"


def test_config_file_overrides_make_up_settings(home: dict[str, str]) -> None:
    write_config(
        home,
        'host = "is.example.com"\nport = 8443\nscheme = "https"\n'
        'user = "ops"\npassword = "from-file"\n',
    )

    connection = resolve_connection(env={**home, "IS_ADMIN_PASSWORD": "env", "IS_HTTP_PORT": "1"})

    assert connection.base_url == "https://is.example.com:8443/api/v1"
    assert (connection.user, connection.password) == ("ops", "from-file")


def test_environment_overrides_config_file(home: dict[str, str]) -> None:
    write_config(home, 'host = "from-file"\npassword = "from-file"\n')

    connection = resolve_connection(
        env={**home, "ISCLI_HOST": "from-env", "ISCLI_PASSWORD": "env-secret", "ISCLI_PORT": "81"}
    )

    assert connection.base_url == "http://from-env:81/api/v1"
    assert connection.password == "env-secret"


def test_flags_override_everything(home: dict[str, str]) -> None:
    env = {**home, "ISCLI_HOST": "from-env", "ISCLI_USER": "env-user"}

    connection = resolve_connection(
        host="flag-host", port=8000, user="flag-user", password="flag-pw", env=env
    )

    assert connection.base_url == "http://flag-host:8000/api/v1"
    assert (connection.user, connection.password) == ("flag-user", "flag-pw")


def test_port_443_implies_https(home: dict[str, str]) -> None:
    connection = resolve_connection(host="appliance", port=443, env=home)

    assert connection.base_url == "https://appliance:443/api/v1"


def test_host_may_be_a_url_with_scheme_and_port(home: dict[str, str]) -> None:
    connection = resolve_connection(host="https://is.example.com:9443", env=home)

    assert connection.base_url == "https://is.example.com:9443/api/v1"


def test_insecure_flag_turns_off_certificate_checks(home: dict[str, str]) -> None:
    assert resolve_connection(env=home).verify is True
    assert resolve_connection(insecure=True, env=home).verify is False


def test_port_that_is_not_a_number_is_refused(home: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="Port 'eighty' is not a TCP port"):
        resolve_connection(env={**home, "ISCLI_PORT": "eighty"})


def test_unknown_config_key_is_refused_with_the_allowed_ones(home: dict[str, str]) -> None:
    write_config(home, 'hostname = "x"\n')

    with pytest.raises(ConfigError, match="unknown key 'hostname'; expected only host"):
        resolve_connection(env=home)


def test_missing_config_named_by_iscli_config_is_an_error(
    home: dict[str, str], tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="named by ISCLI_CONFIG does not exist"):
        resolve_connection(env={**home, "ISCLI_CONFIG": str(tmp_path / "absent.toml")})


def test_token_from_environment_is_used_unless_a_password_flag_is_given(
    home: dict[str, str],
) -> None:
    env = {**home, "ISCLI_TOKEN": "tok", "ISCLI_PASSWORD": "env-pw"}

    assert resolve_connection(env=env).token == "tok"
    assert resolve_connection(password="flag-pw", env=env).token is None
