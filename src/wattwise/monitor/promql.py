"""Find every series selector in a PromQL expression, and decide whether a user may run it.

A small lexer, not a full parser: it tokenizes PromQL (strings in the three quote styles, comments,
numbers, durations, identifiers, operators) and walks the tokens to find vector selectors — an
identifier that is not a function or aggregation call, not a keyword, not inside a grouping label
list (``by``/``without``/``on``/``ignoring``/``group_left``/``group_right``), optionally followed by
``{matchers}``, or a bare ``{matchers}``. Anything it does not understand is an error, so that a
query the guard cannot read is refused rather than let through.

Policy (:func:`check_access`): every selector must carry an ownership matcher —
``user="<me>"``, ``project="<p>"`` with p one of my projects, or ``unit="<id>"`` for units I may see
— as an equality or as a regex that is a plain alternation of such names (``project=~"a|b"``).
Negative matchers never count. Series without those labels can therefore not be read by non-admins.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from wattwise.errors import AccessDenied as AccessDenied
from wattwise.errors import PromQLError as PromQLError


@dataclass(frozen=True)
class Token:
    kind: str  # ident, string, number, op, eof
    text: str
    position: int


@dataclass(frozen=True)
class Matcher:
    label: str
    op: str  # = != =~ !~
    value: str


@dataclass(frozen=True)
class Selector:
    name: str | None
    matchers: tuple[Matcher, ...]
    position: int

    def metric_name(self) -> str | None:
        if self.name:
            return self.name
        for m in self.matchers:
            if m.label == "__name__" and m.op == "=":
                return m.value
        return None


_TOKEN = re.compile(r"""
    (?P<ws>\s+|\#[^\n]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|`[^`]*`)
  | (?P<number>0[xX][0-9a-fA-F]+
      |(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?(?:(?:ms|s|m|h|d|w|y)(?:\d+(?:ms|s|m|h|d|w|y))*)?)
  | (?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
  | (?P<op>=~|!~|!=|==|<=|>=|[-+*/%^<>=(){}\[\],:@])
""", re.VERBOSE)

GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
BINARY_KEYWORDS = {"and", "or", "unless", "bool", "atan2"}
AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk",
                "topk", "quantile", "limitk", "limit_ratio"}
NUMBER_WORDS = {"inf", "nan"}
_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", '"': '"', "'": "'", "a": "\a", "b": "\b", "f": "\f", "r": "\r",
            "v": "\v"}


def tokenize(expression: str) -> list[Token]:
    tokens: list[Token] = []
    position = 0
    while position < len(expression):
        match = _TOKEN.match(expression, position)
        if match is None:
            raise PromQLError(f"unexpected character {expression[position]!r} at position {position}")
        kind = match.lastgroup or ""
        if kind != "ws":
            tokens.append(Token(kind, match.group(), position))
        position = match.end()
    tokens.append(Token("eof", "", len(expression)))
    return tokens


def _unquote(text: str) -> str:
    if text[0] == "`":
        return text[1:-1]
    body = text[1:-1]
    out: list[str] = []
    i = 0
    while i < len(body):
        c = body[i]
        if c == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            if nxt in _ESCAPES:
                out.append(_ESCAPES[nxt])
                i += 2
                continue
            if nxt in "xuU01234567":
                raise PromQLError(f"string escapes like \\{nxt} are not accepted by the guard: {text}")
            out.append(nxt)
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def selectors(expression: str) -> list[Selector]:
    """Every vector selector in the expression, in order."""
    tokens = tokenize(expression)
    found: list[Selector] = []
    i = 0

    def skip_group(start: int, open_text: str, close_text: str) -> int:
        depth = 0
        j = start
        while True:
            token = tokens[j]
            if token.kind == "eof":
                raise PromQLError(f"unclosed {open_text!r} at position {tokens[start].position}")
            if token.kind == "op" and token.text == open_text:
                depth += 1
            elif token.kind == "op" and token.text == close_text:
                depth -= 1
                if depth == 0:
                    return j + 1
            j += 1

    def matchers(start: int) -> tuple[tuple[Matcher, ...], int]:
        j = start + 1  # after '{'
        result: list[Matcher] = []
        while True:
            token = tokens[j]
            if token.kind == "op" and token.text == "}":
                return tuple(result), j + 1
            if token.kind != "ident":
                raise PromQLError(f"expected a label name at position {token.position}, got {token.text!r}")
            op, value = tokens[j + 1], tokens[j + 2]
            if op.kind != "op" or op.text not in ("=", "!=", "=~", "!~") or value.kind != "string":
                raise PromQLError(f"expected a label matcher like {token.text}=\"…\" at position {token.position}")
            result.append(Matcher(token.text, op.text, _unquote(value.text)))
            j += 3
            if tokens[j].kind == "op" and tokens[j].text == ",":
                j += 1
            elif not (tokens[j].kind == "op" and tokens[j].text == "}"):
                raise PromQLError(f"expected ',' or '}}' at position {tokens[j].position}")

    while tokens[i].kind != "eof":
        token = tokens[i]
        nxt = tokens[i + 1]
        if token.kind == "ident":
            word = token.text
            lower = word.lower()
            if lower in GROUPING:  # a label list, not selectors
                i = skip_group(i + 1, "(", ")") if nxt.kind == "op" and nxt.text == "(" else i + 1
                continue
            if nxt.kind == "op" and nxt.text == "(":
                i += 1  # a function or aggregation call: its arguments are walked next
                continue
            if lower == "offset":
                i += 1
                continue
            if lower in BINARY_KEYWORDS or lower in NUMBER_WORDS:
                i += 1
                continue
            if word in AGGREGATIONS and nxt.kind == "ident" and nxt.text.lower() in ("by", "without"):
                i += 1
                continue
            if nxt.kind == "op" and nxt.text == "{":
                found_matchers, i = matchers(i + 1)
            else:
                found_matchers, i = (), i + 1
            found.append(Selector(word, found_matchers, token.position))
            continue
        if token.kind == "op" and token.text == "{":
            found_matchers, i = matchers(i)
            found.append(Selector(None, found_matchers, token.position))
            continue
        if token.kind == "op" and token.text == "[":
            i = skip_group(i, "[", "]")
            continue
        if token.kind == "op" and token.text == "}":
            raise PromQLError(f"unexpected '}}' at position {token.position}")
        i += 1
    return found


_LITERAL = re.compile(r"(?:[A-Za-z0-9_-]|\\\.)+")


def literal_alternatives(regex: str) -> list[str] | None:
    """['a', 'b'] for a regex that is a plain alternation of names ("a|b", "a\\.b"), else None."""
    parts = regex.split("|")
    if not all(_LITERAL.fullmatch(p) for p in parts):
        return None
    return [p.replace("\\.", ".") for p in parts]


def _values(matcher: Matcher) -> list[str] | None:
    if matcher.op == "=":
        return [matcher.value] if matcher.value else None
    if matcher.op == "=~":
        return literal_alternatives(matcher.value)
    return None


UnitKey = tuple[str, str, str]  # (hostname, manager, unit id): unit ids repeat across nodes and managers


def _single(selector: Selector, label: str) -> str | None:
    values = [m.value for m in selector.matchers if m.label == label and m.op == "=" and m.value]
    return values[0] if len(values) == 1 else None


def owned(selector: Selector, user: str, projects: Iterable[str],
          units_visible: Callable[[list[UnitKey]], bool]) -> bool:
    """A selector is owned when it pins user= to the caller, project= to their projects, or unit= to their
    units together with hostname= and manager= (a unit id alone is not unique: job 4242 of node01 is not job
    4242 of another node or cluster, and units not yet pulled into the database would pass unseen)."""
    project_set = set(projects)
    for matcher in selector.matchers:
        values = _values(matcher)
        if not values:
            continue
        if matcher.label == "user" and all(v == user for v in values):
            return True
        if matcher.label == "project" and all(v in project_set for v in values):
            return True
        if matcher.label == "unit":
            hostname, manager = _single(selector, "hostname"), _single(selector, "manager")
            if hostname and manager and units_visible([(hostname, manager, v) for v in values]):
                return True
    return False


def check_access(expression: str, user: str, projects: Iterable[str],
                 units_visible: Callable[[list[UnitKey]], bool]) -> list[Selector]:
    """Raise AccessDenied unless every selector of the expression is owned (see the module doc)."""
    found = selectors(expression)
    projects = list(projects)
    for selector in found:
        if not owned(selector, user, projects, units_visible):
            name = selector.metric_name() or "{…}"
            raise AccessDenied(
                f"{user} may not query {name} at position {selector.position}: add user=\"{user}\""
                + (f", project=\"<one of {', '.join(sorted(projects))}>\"" if projects else "")
                + " or hostname=, manager= and unit=\"<one of your units>\" to every selector")
    return found
