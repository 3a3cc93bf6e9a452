"""docs/configuration.md's table, generated from shared/config.py (so the two never drift).

`python scripts/config_table.py --write` updates docs/configuration.md in place.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pydantic_core import PydanticUndefined  # noqa: E402

from shared.config import Settings  # noqa: E402


def default_text(name: str) -> str:
    field = Settings.model_fields[name]
    if field.default_factory is not None:
        value = field.default_factory()
    elif field.default is PydanticUndefined or field.default is None:
        return "(empty)"
    else:
        value = field.default
    if name == "model_cache_dir":
        return "`~/.cache/image-browser/models`"
    if isinstance(value, list):
        return "(empty)" if not value else ",".join(value)
    return f"`{value}`"


START, END = "<!-- config:start -->", "<!-- config:end -->"
CONFIGURATION_DOC = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def table() -> str:
    lines = ["| Variable | Default | What it does |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        lines.append(f"| `IB_{name.upper()}` | {default_text(name)} | {field.description or ''} |")
    return "\n".join(lines)


def main() -> None:
    """Print the table, or with --write replace it between the markers in docs/configuration.md."""
    if "--write" not in sys.argv:
        print(table())
        return
    text = CONFIGURATION_DOC.read_text()
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    CONFIGURATION_DOC.write_text(f"{head}{START}\n{table()}\n{END}{tail}")


if __name__ == "__main__":
    main()
