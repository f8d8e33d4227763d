"""A small SOQL parser for what a sync client sends about Account, answering Salesforce's errors.

    SELECT f, ... FROM Account [WHERE c AND c ...] [ORDER BY Id [ASC|DESC]] [LIMIT n]
    c: Id IN ('a', ...) | Id = 'a' | IsDeleted = true|false | <datetime field> (=|>|>=|<|<=) 2026-01-01T00:00:00Z
       | <field> (=|!=) 'text'|number|true|false|null
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tests.fakes.salesforce.describe import COMPOUND, AccountDescribe

_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^'\\]|\\.)*')"
    r"|(?P<dt>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,3})?(?:Z|[+-]\d{2}:\d{2}))"
    r"|(?P<num>-?\d+(?:\.\d+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_.]*)"
    r"|(?P<op>>=|<=|!=|=|<|>)"
    r"|(?P<punct>[,()]))"
)
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: a == b, "!=": lambda a, b: a != b,
    ">": lambda a, b: a is not None and a > b, ">=": lambda a, b: a is not None and a >= b,
    "<": lambda a, b: a is not None and a < b, "<=": lambda a, b: a is not None and a <= b,
}
_ID = re.compile(r"^[a-zA-Z0-9]{15}(?:[a-zA-Z0-9]{3})?$")


class SoqlError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass
class Query:
    fields: list[str]
    ids: set[str] | None = None  # 15-character (case-sensitive) keys asked for by `Id IN` / `Id =`
    predicates: list[Callable[[dict[str, Any]], bool]] = field(default_factory=list)
    descending: bool | None = None  # None: no ORDER BY
    limit: int | None = None

    def matches(self, record: dict[str, Any]) -> bool:
        return all(predicate(record) for predicate in self.predicates)


def sf_datetime(value: datetime) -> str:
    """Salesforce's REST form: `2026-11-24T10:00:00.000+0000` (UTC, milliseconds, no colon)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}+0000"


def parse_datetime(text: str) -> datetime:
    value = text.replace("Z", "+00:00")
    if len(value) >= 5 and value[-5] in "+-" and value[-3] != ":":
        value = value[:-2] + ":" + value[-2:]
    return datetime.fromisoformat(value)


def parse(soql: str, describe: AccountDescribe) -> Query:
    tokens = _tokenize(soql)
    pos = 0

    def peek() -> tuple[str, str, int]:
        return tokens[pos] if pos < len(tokens) else ("end", "", len(soql))

    def take(kind: str | None = None, word: str | None = None) -> tuple[str, str, int]:
        nonlocal pos
        token = peek()
        if (kind and token[0] != kind) or (word and token[1].upper() != word):
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: {token[1] or '<EOF>'}")
        pos += 1
        return token

    def column(token: tuple[str, str, int]) -> str:
        name = describe.canonical(token[1])
        if name is None:
            raise SoqlError("INVALID_FIELD", _no_such_column(soql, token))
        return name

    take("name", "SELECT")
    fields = [column(take("name"))]
    while peek()[1] == ",":
        take("punct")
        fields.append(column(take("name")))
    take("name", "FROM")
    entity = take("name")
    if entity[1].lower() != "account":
        raise SoqlError("INVALID_TYPE", f"sObject type '{entity[1]}' is not supported.")
    query = Query(fields)
    if peek()[1].upper() == "WHERE":
        take()
        while True:
            pos = _condition(tokens, pos, query, column, soql)
            if peek()[1].upper() != "AND":
                break
            take()
    if peek()[1].upper() == "ORDER":
        take()
        take("name", "BY")
        if column(take("name")) != "Id":
            raise SoqlError("MALFORMED_QUERY", "the fake orders by Id only")
        query.descending = False
        if peek()[1].upper() in ("ASC", "DESC"):
            query.descending = take()[1].upper() == "DESC"
    if peek()[1].upper() == "LIMIT":
        take()
        query.limit = int(take("num")[1])
    if peek()[0] != "end":
        raise SoqlError("MALFORMED_QUERY", f"unexpected token: {peek()[1]}")
    return query


def _condition(tokens: list[tuple[str, str, int]], pos: int, query: Query,
               column: Callable[[tuple[str, str, int]], str], soql: str) -> int:
    def at(i: int) -> tuple[str, str, int]:
        return tokens[i] if i < len(tokens) else ("end", "", len(soql))

    name = column(at(pos))
    if name in COMPOUND:
        raise SoqlError("INVALID_FIELD", f"field '{name}' can not be filtered in a query call")
    op = at(pos + 1)
    if name == "Id" and op[1].upper() == "IN":
        if at(pos + 2)[1] != "(":
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: {at(pos + 2)[1]}")
        i, ids = pos + 3, []
        while True:
            literal = at(i)
            if literal[0] != "str":
                raise SoqlError("MALFORMED_QUERY", f"unexpected token: {literal[1] or '<EOF>'}")
            ids.append(_id_key(literal[1][1:-1]))
            if at(i + 1)[1] == ")":
                query.ids = ids_set = set(ids) if query.ids is None else query.ids & set(ids)
                query.predicates.append(lambda r, keys=ids_set: r["Id"][:15] in keys)  # type: ignore[misc]
                return i + 2
            if at(i + 1)[1] != ",":
                raise SoqlError("MALFORMED_QUERY", f"unexpected token: {at(i + 1)[1] or '<EOF>'}")
            i += 2
    if op[0] != "op":
        raise SoqlError("MALFORMED_QUERY", f"unexpected token: {op[1] or '<EOF>'}")
    literal = at(pos + 2)
    compare = _COMPARE[op[1]]
    value: Any
    if literal[0] == "dt":
        value = sf_datetime(parse_datetime(literal[1]))  # the REST form compares as text (all UTC)
    elif literal[0] == "str":
        value = literal[1][1:-1].replace("\\'", "'")
        if name == "Id":
            key = _id_key(value)
            query.ids = {key} if query.ids is None else query.ids & {key}
            query.predicates.append(lambda r: r["Id"][:15] == key)
            return pos + 3
    elif literal[0] == "num":
        value = float(literal[1])
    elif literal[1].lower() in ("true", "false", "null"):
        value = {"true": True, "false": False, "null": None}[literal[1].lower()]
    else:
        raise SoqlError("MALFORMED_QUERY", f"unexpected token: {literal[1] or '<EOF>'}")
    if op[1] not in ("=", "!=") and literal[0] not in ("dt", "num", "str"):
        raise SoqlError("MALFORMED_QUERY", f"invalid operator on field {name}")
    query.predicates.append(lambda r: compare(r.get(name), value))
    return pos + 3


def _id_key(text: str) -> str:
    if not _ID.match(text):
        raise SoqlError("INVALID_QUERY_FILTER_OPERATOR", f"invalid ID field: {text}")
    return text[:15]


def _tokenize(soql: str) -> list[tuple[str, str, int]]:
    tokens, pos = [], 0
    while pos < len(soql):
        if soql[pos:].strip() == "":
            break
        match = _TOKEN.match(soql, pos)
        if not match or match.end() == pos:
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: {soql[pos:].split()[0]}")
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind), match.start(kind)))
        pos = match.end()
    return tokens


def _no_such_column(soql: str, token: tuple[str, str, int]) -> str:
    column = token[2] + 1
    return (f"\n{soql}\n{' ' * token[2]}^\nERROR at Row:1:Column:{column}\nNo such column '{token[1]}' on entity "
            "'Account'. If you are attempting to use a custom field, be sure to append the '__c' after the custom "
            "field name. Please reference your WSDL or the describe call for the appropriate names.")
