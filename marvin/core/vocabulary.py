"""Shared vocabulary lint: the seed team's pitfall was "create platform environment named demo01"
next to "create api environment demo01". Every format starts with an allowed verb, and families
that act on the same object say it the same way."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from marvin.core.registry import CommandTable

__all__ = ["load_verbs", "lint"]

_PLACEHOLDER = re.compile(r"{{\s*([A-Za-z_]\w*)[^}]*}}")


def load_verbs(path: str | Path) -> frozenset[str]:
    """The verbs of ``path``; errors (``ValueError``) name the file."""
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the vocabulary: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from None
    verbs = data.get("verbs") if isinstance(data, dict) else None
    if not isinstance(verbs, list) or not all(isinstance(v, str) for v in verbs):
        raise ValueError(f"{path}: verbs: expected a list of words")
    return frozenset(v.lower() for v in verbs)


def _head(fmt: str) -> list[str]:
    """Words before the first group or regex construct; placeholders become '{name}'."""
    text = _PLACEHOLDER.sub(lambda m: " {" + m.group(1) + "} ", fmt.lstrip("^"))
    words = []
    for word in re.findall(r"\{\w+\}|[A-Za-z0-9_\-]+|\S", text):
        if len(word) == 1 and not word.isalnum():
            break  # a group or other regex construct: what follows is not fixed wording
        words.append(word.lower())
    return words


def lint(table: CommandTable, verbs: frozenset[str]) -> list[str]:
    """Problems as readable lines; an empty list means the table is consistent."""
    errors: list[str] = []
    shapes: dict[tuple[str, str], tuple[tuple[str, ...], str, str]] = {}
    for cmd in table:
        for fmt in cmd.spec.formats:
            words = _head(fmt)
            if not words or words[0] not in verbs:
                first = words[0] if words else fmt.split(" ")[0]
                errors.append(
                    f"{cmd.label}: format {fmt!r} starts with {first!r}, which is not a "
                    f"verb in the vocabulary ({', '.join(sorted(verbs))})"
                )
        words = _head(cmd.spec.formats[0])
        family = cmd.spec.family
        if family not in words or words.index(family) + 1 >= len(words):
            continue
        at = words.index(family)
        key = (words[0], words[at + 1])
        shape = tuple("<family>" if w == family else w for w in words)
        cut = next((i for i, w in enumerate(shape) if w.startswith("{")), len(shape) - 1)
        shape = shape[: cut + 1]
        seen = shapes.setdefault(key, (shape, cmd.label, cmd.spec.formats[0]))
        if seen[0] != shape:
            errors.append(
                f"{cmd.label}: '{cmd.spec.formats[0]}' and {seen[1]}: '{seen[2]}' both "
                f"{key[0]} an {key[1]} but say it differently ('{' '.join(shape)}' vs "
                f"'{' '.join(seen[0])}'); families must share one shape"
            )
    return errors
