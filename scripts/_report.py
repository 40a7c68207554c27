"""What the report scripts share: writing a Markdown report, with the command that made it, where
``--out`` says, and echoing it."""

from __future__ import annotations

from pathlib import Path


def write_report(out: str | Path, text: str, command: str) -> None:
    """Write ``text`` and a closing "Command:" block to ``out`` (its folder created) and print it."""
    text = text.rstrip("\n") + "\n\nCommand:\n\n```\n" + command + "\n```\n"
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(text, encoding="utf-8")
    print(text)
