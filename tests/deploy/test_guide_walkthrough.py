"""The deploy guides, walked through offline: every shell block parses (`bash -n`), and every stack output,
SSM parameter, repository file and tool the blocks name exists (outputs in the packaged template,
parameters among those the stack reads, files in the repo, tools in the guide's tools table)."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from shared.config import Settings

ROOT = Path(__file__).resolve().parents[2]
GUIDES = [ROOT / "docs" / "deploy-aws.md", ROOT / "docs" / "deploy-cloudflare.md"]
SHELL_BLOCK = re.compile(r"^( *)```(?:sh|bash|shell)\n(.*?)^\1```", re.M | re.S)
# Shell builtins and the coreutils every Debian has: no install step needed.
BASE_COMMANDS = {"cd", "export", "alias", "echo", "cat", "true", "false", "test", "[", "printf", "read", "set",
                 "unset", "source", ".", "mkdir", "rm", "cp", "mv", "ls", "date", "sleep"}
SEPARATORS = {"|", "||", "&&", ";", "\n", "(", ")", "{", "}", "&", "!",
              "if", "then", "else", "elif", "fi", "while", "until", "do", "done"}  # a command may follow each
PATH_LIKE = re.compile(r"(?<![\w./$-])((?:infra|shared|functions|web|scripts|docs|tests|bench)/[\w./-]*\w"
                       r"|Dockerfile|serverless\.yml)(?![\w/-])")


def shell_blocks(guide: Path) -> list[str]:
    return [re.sub(rf"(?m)^{indent}", "", body) for indent, body in SHELL_BLOCK.findall(guide.read_text())]


def all_blocks() -> list[tuple[str, int, str]]:
    return [(guide.name, number, block) for guide in GUIDES for number, block in enumerate(shell_blocks(guide))]


def outer_substitutions(script: str) -> tuple[str, list[str]]:
    """The script with each outermost `$( … )` replaced by one word, and the bodies (commands too)."""
    parts, bodies, done = [], [], 0
    while (start := script.find("$(", done)) >= 0:
        depth, end = 1, start + 2
        while depth and end < len(script):
            depth += {"(": 1, ")": -1}.get(script[end], 0)
            end += 1
        parts.append(script[done:start] + "SUBST")
        bodies.append(script[start + 2:end - 1])
        done = end
    return "".join(parts) + script[done:], bodies


def commands(script: str) -> tuple[set[str], set[str]]:
    """The commands a script calls (each simple command's first word, past assignments and `sudo`), and
    the shell functions it defines; commands inside `$( … )` included."""
    text, bodies = outer_substitutions(re.sub(r"(?m)(^|[ \t])#.*$", r"\1", script.replace("\\\n", " ")))
    lexer = shlex.shlex(text, posix=True, punctuation_chars="|&;()!")
    lexer.whitespace = " \t\r"
    lexer.wordchars += "$:=/.,-*+@%~[]?{}"
    tokens = list(lexer)
    called, defined, expect_command = set(), set(), True
    for index, token in enumerate(tokens):
        if token in SEPARATORS or set(token) <= set("|&;()!\n"):
            previous = tokens[index - 1] if index else ""
            if token.startswith("()") and re.fullmatch(r"[A-Za-z_][\w-]*", previous):
                defined.add(previous)  # name() { … }
            expect_command = True
            continue
        if expect_command and re.match(r"^[A-Za-z_]\w*=", token):
            continue  # VAR=value before a command, or alone
        if expect_command:
            called.add(Path(token).name)
            expect_command = token == "sudo"
    for body in bodies:
        inner_called, inner_defined = commands(body)
        called |= inner_called
        defined |= inner_defined
    return called, defined


def tools_table(guide: Path) -> set[str]:
    """The names in backticks in the first column of the guide's "0. Tools" table."""
    text = guide.read_text()
    section = text[text.index("## 0. Tools"):]
    rows = re.findall(r"^\|([^|\n]*)\|", section.split("\n\n", 2)[1], re.M)
    return {name for row in rows[2:] for name in re.findall(r"`([^`]+)`", row)}


def test_the_guides_have_shell_blocks() -> None:
    counts = {guide.name: len(shell_blocks(guide)) for guide in GUIDES}
    assert counts["deploy-aws.md"] >= 12 and counts["deploy-cloudflare.md"] >= 4, counts


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize(("guide", "number", "block"), all_blocks(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_shell_block_parses(guide: str, number: int, block: str, tmp_path: Path) -> None:
    script = tmp_path / "block.sh"
    script.write_text(block)
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, f"{guide}, shell block {number + 1}:\n{result.stderr}\n{block}"


def test_the_command_parser_sees_what_a_block_calls() -> None:
    script = ('sudo apt-get install jq && X=$(aws sts get-caller-identity | jq -r .Account)\n'
              'f() { osls print; }\nIB_A=1 .venv/bin/image-browser smoke "$(f)" # not: comment\n'
              "npx wrangler@4 login; echo 'a | b'\nif [ -n \"$B\" ]; then psql -c 'SELECT 1'; fi\n")
    assert commands(script) == ({"sudo", "apt-get", "aws", "jq", "osls", "image-browser", "f", "npx", "echo", "[",
                                 "psql"}, {"f"})


def test_every_tool_called_is_in_the_tools_table() -> None:
    # Shell functions count wherever they are defined: deploy-cloudflare.md uses deploy-aws.md's step 0.
    defined = {name for _, _, block in all_blocks() for name in commands(block)[1]}
    assert "output" in defined
    for guide in GUIDES:
        table = tools_table(guide)
        assert {"aws", "osls", "npx"} <= table, (guide.name, table)
        called = {name for block in shell_blocks(guide) for name in commands(block)[0]}
        missing = called - table - BASE_COMMANDS - defined
        assert missing == set(), f"{guide.name} calls tools its tools table does not list: {sorted(missing)}"


def test_every_stack_output_named_exists(eu_template: dict[str, Any]) -> None:
    named = set()
    for _, _, block in all_blocks():
        named |= set(re.findall(r"OutputKey=='(\w+)'", block))
        named |= set(re.findall(r"\$\(output (\w+)\)", block))
    assert {"PhotosBucketName", "GalleryUrl", "EmbedRoleArn", "ApiRoleArn"} <= named
    assert named - set(eu_template["Outputs"]) == set()


def stack_parameters() -> dict[str, str]:
    """The SSM parameters the stack reads, by name, with the setting that names each (IB_*_PARAMETER)."""
    text = (ROOT / "serverless.yml").read_text()
    return {name: variable for variable, name in
            re.findall(r"(IB_\w+_PARAMETER):[^\n]*\$\{self:custom\.secrets\}/([a-z0-9-]+)", text)}


def test_every_parameter_named_is_one_the_stack_reads() -> None:
    read = stack_parameters()
    assert {"database-url", "api-key", "cloudflare-api-token", "r2-access-key-id"} <= set(read)
    for variable in read.values():
        assert variable.removeprefix("IB_").lower() in Settings.model_fields, variable  # shared/config.py
    named = {name for _, _, block in all_blocks() for name in re.findall(r"/image-browser/\$STAGE/([a-z0-9-]+)", block)}
    assert {"database-url", "api-key"} <= named
    assert named - set(read) == set()


def test_every_repository_file_named_exists() -> None:
    named = {path for _, _, block in all_blocks() for path in PATH_LIKE.findall(block) if "node_modules" not in path}
    assert "infra/aws/publish_gallery.py" in named
    assert {path for path in named if not (ROOT / path).exists()} == set()


def test_the_cloudflare_commands_are_written_in_one_place() -> None:
    """infra/cloudflare/ and the other docs link to docs/deploy-cloudflare.md instead of repeating them."""
    texts = [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "infra" / "cloudflare").iterdir()]
    repeats = [path.relative_to(ROOT) for path in texts
               if path.name != "deploy-cloudflare.md" and re.search(r"wrangler@?\d* (r2|queues|pages|login)",
                                                                 path.read_text())]
    assert repeats == []
    assert len(re.findall(r"npx wrangler@4 ", (ROOT / "docs" / "deploy-cloudflare.md").read_text())) >= 10
    assert "docs/deploy-cloudflare.md" in (ROOT / "infra" / "cloudflare" / "README.md").read_text()
