"""Install this project into the Makefile's virtual environment: `python shared/dev/install.py local,dev`.

uv installs the dev extras (torch included) in about 11 s where pip takes 54 s, and a clean clone's `make test`
starts with that install. uv does not read pip's configuration, so the settings a machine gives pip (its local
wheels and index, its constraints, its certificate) are handed to uv in the variables uv reads. Where uv cannot be
installed or cannot finish, pip does the install as before.

It runs before the project is installed, so it uses the standard library only.
"""

import ast
import os
import subprocess
import sys

# pip's option name -> the uv variable of the same meaning. pip separates a list by white space; uv's lists are
# space-separated too, but for UV_FIND_LINKS (LIST_SEPARATOR).
PIP_TO_UV = {
    "index-url": "UV_INDEX_URL",
    "extra-index-url": "UV_EXTRA_INDEX_URL",
    "find-links": "UV_FIND_LINKS",
    "constraint": "UV_CONSTRAINT",
    "cert": "SSL_CERT_FILE",
    "timeout": "UV_HTTP_TIMEOUT",
    "default-timeout": "UV_HTTP_TIMEOUT",
}
LIST_SEPARATOR = {"UV_FIND_LINKS": ","}


def pip_settings(config_list: str) -> dict[str, str]:
    """pip's settings from `pip config list` output (`global.find-links='/opt/wheels'`); the environment's
    (`:env:.find-links=...`) override the files', as they do for pip."""
    from_files: dict[str, str] = {}
    from_env: dict[str, str] = {}
    for line in config_list.splitlines():
        name, sep, quoted = line.partition("=")
        if not sep:
            continue
        try:
            value = str(ast.literal_eval(quoted))
        except (ValueError, SyntaxError):  # a line this reader does not know must not stop the install
            continue
        scope, _, option = name.rpartition(".")
        (from_env if scope == ":env:" else from_files)[option] = value
    return from_files | from_env


def uv_environment(settings: dict[str, str]) -> dict[str, str]:
    """The UV_* variables that give uv pip's settings. pip takes the best version from all its indexes, and so
    must uv (by default uv stops at the first index that has the package at all)."""
    env = {}
    for option, value in settings.items():
        if option in PIP_TO_UV:
            variable = PIP_TO_UV[option]
            env[variable] = LIST_SEPARATOR.get(variable, " ").join(value.split())
    env["UV_INDEX_STRATEGY"] = "unsafe-best-match"
    return env


def run(*args: str, env: dict[str, str] | None = None) -> bool:
    return subprocess.run([sys.executable, *args], env=env).returncode == 0


def main() -> int:
    target = f".[{sys.argv[1]}]" if len(sys.argv) > 1 else "."
    config = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True)
    env = uv_environment(pip_settings(config.stdout)) | os.environ  # a developer's own UV_* settings win
    # uv compiles nothing by default: Python compiles what a run imports, not all of torch up front.
    if run("-m", "pip", "install", "-q", "uv") and run(
            "-m", "uv", "pip", "install", "--python", sys.executable, "-q", "-e", target, env=env):
        return 0
    print("install.py: uv could not install the project; pip installs it instead (slower)", file=sys.stderr)
    if run("-m", "pip", "install", "-q", "--upgrade", "pip") and run(
            "-m", "pip", "install", "-q", "--no-compile", "-e", target):
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
