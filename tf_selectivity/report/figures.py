"""The figures section: each figure's caption and relative links to its files."""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path
from typing import Mapping, Sequence


def _relative_link(path: str | Path, output_dir: Path) -> str:
    """Path of `path` relative to the report, URL-quoted for Markdown."""
    relative = os.path.relpath(Path(path).resolve(), output_dir.resolve())
    return urllib.parse.quote(Path(relative).as_posix())


def _caption(name: str, captions: Mapping[str, str]) -> str:
    """The caption of the longest start of `name` in `captions` ("" if none)."""
    matches = [prefix for prefix in captions if name.startswith(prefix)]
    return captions[max(matches, key=len)] if matches else ""


def figures_section(figures: dict[str, Sequence[str]] | None, output_dir: Path,
                    captions: Mapping[str, str] | None = None) -> list[str]:
    """The "Figures" section: per figure its name, caption, image and file links.

    Args:
        figures: ``{name: [paths]}`` of the figures drawn, in report order.
        output_dir: The report's folder (links are relative to it).
        captions: ``{start of a figure name: caption}`` (the stages'
            `captions`); a figure gets the caption of the longest start of
            its name.
    """
    lines = ["## Figures", ""]
    if not figures:
        lines += ["No figures were drawn.", ""]
        return lines
    for name, paths in figures.items():
        existing = [Path(p) for p in paths if Path(p).exists()]
        lines += [f"### {name}", ""]
        caption = _caption(name, captions or {})
        if caption:
            lines += [caption, ""]
        if not existing:
            lines += ["_The figure files are missing._", ""]
            continue
        images = [p for p in existing if p.suffix.lower() in (".png", ".svg", ".jpg", ".jpeg")]
        if images:
            lines += [f"![{name}]({_relative_link(images[0], output_dir)})", ""]
        links = ", ".join(
            f"[{p.suffix.lstrip('.').upper()}]({_relative_link(p, output_dir)})" for p in existing
        )
        lines += [f"Files: {links}", ""]
    return lines
