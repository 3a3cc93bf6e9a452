"""shared/dev/install.py hands pip's settings to uv: a setting lost on the way would make uv resolve other
releases than pip (another torch), or fail where pip succeeds."""

from shared.dev.install import pip_settings, uv_environment

CONFIG_LIST = """\
global.cert='/etc/ssl/certs/ca-certificates.crt'
global.constraint='/etc/xdg/pip/constraints.txt'
global.extra-index-url='file:///opt/pypi/simple file:///opt/pypi-more/simple'
global.find-links='/opt/wheels'
:env:.find-links='/opt/wheels /srv/more-wheels'
:env:.default-timeout='180'
install.no-binary=':none:'
global.odd=not quoted
"""


def test_the_environments_settings_override_the_files():
    settings = pip_settings(CONFIG_LIST)
    assert settings["find-links"] == "/opt/wheels /srv/more-wheels"
    assert settings["constraint"] == "/etc/xdg/pip/constraints.txt"
    assert settings["no-binary"] == ":none:"
    assert "odd" not in settings  # a line it cannot read is left out, not an error that stops `make`


def test_uv_gets_the_same_indexes_wheels_constraints_and_certificate():
    env = uv_environment(pip_settings(CONFIG_LIST))
    assert env == {
        "SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt",
        "UV_CONSTRAINT": "/etc/xdg/pip/constraints.txt",
        "UV_EXTRA_INDEX_URL": "file:///opt/pypi/simple file:///opt/pypi-more/simple",
        "UV_FIND_LINKS": "/opt/wheels,/srv/more-wheels",  # uv separates these by commas
        "UV_HTTP_TIMEOUT": "180",
        "UV_INDEX_STRATEGY": "unsafe-best-match",  # pip's choice: the best release of all indexes
    }


def test_a_machine_without_pip_settings_still_takes_the_best_release():
    assert uv_environment(pip_settings("")) == {"UV_INDEX_STRATEGY": "unsafe-best-match"}
