"""StackStorm's alias language, compiled once per format into one regular expression.

A format is a regular expression with ``{{ name }}`` and ``{{ name=default }}`` placeholders, e.g.
``create platform environment named {{ environment }}( with dataset {{ dataset }})?``.
Compatible with StackStorm's ``ActionAliasFormatParser`` (its unit-test vectors are in
``tests/test_grammar_st2.py``), with these differences:

* A group whose placeholders all have defaults is optional even without a ``?``.
* Literal words match case-insensitively; values keep their case.
* An ``=`` inside a quoted value is data, never the start of a ``key=value`` pair.
* Values may be JSON objects nested up to three levels deep.
* A full stop ending a format is optional in the message.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

__all__ = ["FormatError", "NoMatch", "Format", "compile_format", "extract", "split_pairs"]


class NoMatch(ValueError):
    """The text does not match the format (a ``ValueError``, so callers may catch either)."""


class FormatError(ValueError):
    """The format itself is malformed (unclosed ``{{``, bad regex, bad placeholder name)."""


# A value in a message: a quoted string, a JSON object (three levels), or lazily anything else.
_DQ = r'"(?:[^"\\]|\\.)*"'
_SQ = r"'(?:[^'\\]|\\.)*'"
_J0 = r'\{(?:[^{}"]|' + _DQ + r")*\}"
_J1 = r'\{(?:[^{}"]|' + _DQ + "|" + _J0 + r")*\}"
_JSON = r'\{(?:[^{}"]|' + _DQ + "|" + _J1 + r")*\}"
_VALUE = f"{_DQ}|{_SQ}|{_JSON}|.+?"

# One token of a message, for finding the trailing key=value pairs. Quoted strings and JSON are
# single tokens, so "a=b" inside quotes is data (StackStorm #5074).
_PAIR_VALUE = f"{_DQ}|{_SQ}|{_JSON}|[^\\s\"']\\S*|\"\"|''"
_TOKEN = re.compile(
    rf"(?P<pair>(?P<key>[A-Za-z_][\w.-]*)=(?P<val>{_PAIR_VALUE}))(?=\s|$)"
    rf"|{_DQ}|{_SQ}|{_JSON}|\S+",
    re.DOTALL,
)
_NAME = re.compile(r"[A-Za-z_]\w*\Z")


def unquote(raw: str) -> str:
    """Strip one pair of matching quotes around a value (StackStorm strips them too)."""
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "\"'":
        return raw[1:-1]
    return raw


def split_pairs(text: str) -> tuple[str, dict[str, str]]:
    """Cut the trailing ``key=value`` pairs off a message: ``(rest, pairs)``."""
    tokens = list(_TOKEN.finditer(text))
    cut = len(tokens)
    while cut > 0 and tokens[cut - 1].group("pair"):
        cut -= 1
    pairs = {t.group("key"): unquote(t.group("val")) for t in tokens[cut:]}
    rest = text[: tokens[cut].start()] if cut < len(tokens) else text
    return rest.strip(), pairs


@dataclass(frozen=True)
class Placeholder:
    name: str
    default: str | None  # None: required

    @property
    def optional(self) -> bool:
        return self.default is not None


@dataclass(frozen=True)
class Format:
    """A compiled format: its regex, placeholders and the literal words it must start with."""

    source: str
    regex: re.Pattern[str]
    placeholders: tuple[Placeholder, ...]
    prefix: tuple[str, ...]  # lowercase literal words every match starts with; () when unknown
    defaults: dict[str, str] = field(hash=False, compare=False)

    @property
    def names(self) -> tuple[str, ...]:
        """Every parameter the format can fill: placeholders and the regex's own named groups."""
        return tuple(n for n in self.regex.groupindex if not n.startswith("_"))

    def match(self, text: str) -> dict[str, str] | None:
        """Values for this format from text without its trailing pairs, or None."""
        m = self.regex.fullmatch(text)
        if m is None:
            return None
        values = dict(self.defaults)
        for name, raw in m.groupdict().items():
            if raw is not None and not name.startswith("_"):
                values[name] = unquote(raw)
        return values


def _scan_placeholder(src: str, start: int) -> tuple[Placeholder, int]:
    """Parse ``{{ ... }}`` at ``start``; braces inside a default may nest (``{{ p={{ x }} }}``)."""
    depth, i = 0, start + 2
    while i < len(src):
        if depth == 0 and src.startswith("}}", i):
            break
        depth += {"{": 1, "}": -1}.get(src[i], 0)
        i += 1
    else:
        raise FormatError(f"unclosed '{{{{' at position {start} in format {src!r}")
    body = src[start + 2 : i].strip()
    name, eq, default = body.partition("=")
    name = name.strip()
    if not _NAME.match(name):
        raise FormatError(f"bad parameter name {name!r} in format {src!r}")
    return Placeholder(name, unquote(default.strip()) if eq else None), i + 2


def _tokens(src: str) -> list[str | Placeholder]:
    out: list[str | Placeholder] = []
    i = 0
    while i < len(src):
        j = src.find("{{", i)
        if j < 0:
            out.append(src[i:])
            break
        if j > i:
            out.append(src[i:j])
        ph, i = _scan_placeholder(src, j)
        out.append(ph)
    return out


def _pieces(text: str) -> Iterator[tuple[int, str, bool]]:
    """Regex atoms of literal format text: (position, an escape pair or one character,
    whether it stands inside a ``[...]`` class, where spaces and parentheses are plain)."""
    i, in_class = 0, False
    while i < len(text):
        if text[i] == "\\":
            yield i, text[i : i + 2], in_class
            i += 2
            continue
        if text[i] == "[":
            in_class = True
        elif text[i] == "]":
            in_class = False
        yield i, text[i], in_class
        i += 1


def _literal(text: str) -> str:
    """Literal format text stays regex, but runs of spaces (outside classes) match any spacing."""
    out: list[str] = []
    for _, piece, in_class in _pieces(text):
        if piece != " " or in_class:
            out.append(piece)
        elif not out or out[-1] != r"\s+":
            out.append(r"\s+")
    return "".join(out)


def _value(ph: Placeholder) -> str:
    return f"(?P<{ph.name}>{_VALUE})"


def _build(tokens: list[str | Placeholder]) -> str:
    """Turn tokens into regex source; optional placeholders swallow their neighbouring space."""
    parts: list[str] = []
    for k, tok in enumerate(tokens):
        if isinstance(tok, str):
            parts.append(_literal(tok))
            continue
        if not tok.optional:
            parts.append(_value(tok))
            continue
        prev = parts[-1] if parts else ""
        if prev.endswith(r"\s+"):
            parts[-1] = prev[:-3]
            parts.append(rf"(?:\s+{_value(tok)})?")
        elif k == 0 and len(tokens) > 1 and isinstance(tokens[1], str) and tokens[1][:1] == " ":
            # At the very start: "{{ p=x }} g ..." must still match "g ...".
            tokens[1] = tokens[1][1:]
            parts.append(rf"(?:{_value(tok)}\s+)?")
        else:
            parts.append(rf"(?:{_value(tok)})?")
    return "".join(parts)


def _optionalise_groups(src: str, tokens: list[str | Placeholder]) -> list[str | Placeholder]:
    """Append ``?`` to each literal group whose placeholders all have defaults.

    StackStorm rejects ``create ... named demo01`` for the seed's format, whose last group lacks
    a ``?``; users expect the default to apply, so such a group is optional.
    """
    stack: list[list[Placeholder]] = []
    out: list[str | Placeholder] = []
    for idx, tok in enumerate(tokens):
        if isinstance(tok, Placeholder):
            for frame in stack:
                frame.append(tok)
            out.append(tok)
            continue
        buf: list[str] = []
        for pos, piece, in_class in _pieces(tok):
            buf.append(piece)
            if in_class or piece not in "()":
                continue
            if piece == "(":
                stack.append([])
            elif stack:
                phs = stack.pop()
                nxt = tok[pos + 1 : pos + 2] or _next_char(tokens, idx)
                if phs and all(p.optional for p in phs) and nxt not in ("?", "*", "+", "{"):
                    buf.append("?")
        out.append("".join(buf))
    if stack:
        raise FormatError(f"unbalanced '(' in format {src!r}")
    return out


def _next_char(tokens: list[str | Placeholder], idx: int) -> str:
    nxt = tokens[idx + 1] if idx + 1 < len(tokens) else ""
    return nxt[:1] if isinstance(nxt, str) else ""


_PREFIX_WORD = re.compile(r"[a-z0-9][a-z0-9_\-]*\Z", re.IGNORECASE)


def _top_level_bar(src: str) -> bool:
    depth, i = 0, 0
    while i < len(src):
        c = src[i]
        if c == "\\":
            i += 2
            continue
        depth += {"(": 1, ")": -1}.get(c, 0)
        if c == "|" and depth == 0:
            return True
        i += 1
    return False


def _prefix(src: str, tokens: list[str | Placeholder]) -> tuple[str, ...]:
    """Leading plain words every match must start with, for the dispatcher's word index."""
    if not tokens or not isinstance(tokens[0], str) or _top_level_bar(src):
        return ()
    pieces = tokens[0].removeprefix("^").removeprefix("\\s*").split(" ")
    # The last piece is a whole word only when nothing follows it (e.g. not "env{{ x }}").
    if len(tokens) > 1:
        pieces = pieces[:-1]
    words: list[str] = []
    for piece in pieces:
        if not _PREFIX_WORD.match(piece):
            break
        words.append(piece.lower())
    return tuple(words)


def compile_format(source: str) -> Format:
    """Compile one alias format; raises FormatError when it is malformed."""
    src = source.strip()
    tokens = _optionalise_groups(src, _tokens(src))
    names = [t.name for t in tokens if isinstance(t, Placeholder)]
    if len(set(names)) != len(names):
        raise FormatError(f"a parameter appears twice in format {source!r}")
    body = _build(list(tokens))
    if body.endswith(".") and not body.endswith("\\."):
        body += "?"  # a sentence-final full stop is optional in the message
    try:
        regex = re.compile(rf"\s*(?:{body})\s*", re.IGNORECASE | re.DOTALL)
    except re.error as exc:
        raise FormatError(f"format {source!r} is not a valid regular expression: {exc}") from exc
    placeholders = tuple(t for t in tokens if isinstance(t, Placeholder))
    defaults = {p.name: p.default for p in placeholders if p.default is not None}
    return Format(source, regex, placeholders, _prefix(src, tokens), defaults)


_CACHE: dict[str, Format] = {}


def extract(format: str, text: str | None) -> dict[str, str]:
    """Parameters of ``text`` under ``format``, as strings; raises ``NoMatch`` if it doesn't fit.

    Trailing ``key=value`` pairs are returned too and override values from the format.
    """
    fmt = _CACHE.get(format)
    if fmt is None:
        fmt = _CACHE[format] = compile_format(format)
    rest, pairs = split_pairs(text or "")
    values = fmt.match(rest)
    if values is None:
        raise NoMatch(f'Command "{text or ""}" doesn\'t match format string "{format}"')
    values.update(pairs)
    return values


def usage(source: str) -> str:
    """A format as people read it: ``create ... named <environment> [with version <v=latest>]``."""
    out: list[str] = []
    opens: list[tuple[int, bool, list[Placeholder]]] = []  # (position, plain group?, inside)
    for tok in _tokens(source.strip().removeprefix("^").removesuffix("$")):
        if isinstance(tok, Placeholder):
            for _, _, phs in opens:
                phs.append(tok)
            out.append(f"<{tok.name}>" if tok.default is None else f"<{tok.name}={tok.default}>")
            continue
        skip = False
        for pos, piece, in_class in _pieces(tok):
            nxt = tok[pos + len(piece) : pos + len(piece) + 1]
            if skip:  # the "?" that made a group optional is shown as the brackets
                skip = False
                continue
            if piece == "\\s":
                out.append(" ")
                skip = nxt in ("*", "+")
            elif piece == "(" and not in_class:
                opens.append((len(out), nxt != "?", []))
                out.append(piece)
            elif piece == ")" and not in_class and opens:
                start, plain, phs = opens.pop()
                if plain and (nxt == "?" or (phs and all(p.optional for p in phs))):
                    out[start] = "["
                    out.append("]")
                    skip = nxt == "?"
                else:
                    out.append(piece)
            else:
                out.append(piece)
    return re.sub(r"\s+", " ", "".join(out).replace("[ ", " [")).strip()
