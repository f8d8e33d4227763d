"""The fake org's Accounts: records keyed by their case-sensitive 15-character id, a settable clock, and the
writes that move SystemModstamp (update, delete, merge) with what getUpdated/getDeleted report."""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.fakes.salesforce.describe import AccountDescribe
from tests.fakes.salesforce.soql import Query, parse_datetime, sf_datetime

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_SYSTEM = ("IsDeleted", "MasterRecordId", "CreatedDate", "LastModifiedDate", "SystemModstamp")
_INDUSTRIES = ("Banking", "Retail", "Energy", "Technology", "Healthcare", "Media", None)
_TYPES = ("Customer - Direct", "Customer - Channel", "Prospect", "Partner", None)
START = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def to_18(record_id: str) -> str:
    """The case-safe 18-character form of a 15-character id (18-character ids are returned as they are)."""
    if len(record_id) == 18:
        return record_id
    suffix = ""
    for block in range(3):
        bits = sum(1 << i for i, ch in enumerate(record_id[block * 5 : block * 5 + 5]) if "A" <= ch <= "Z")
        suffix += _ALPHABET[bits]
    return record_id + suffix


class AccountStore:
    def __init__(self, describe: AccountDescribe, now: datetime = START) -> None:
        self.describe = describe
        self.now = now
        self._records: dict[str, dict[str, Any]] = {}  # 15-char key -> record; replaced, never mutated
        self._deleted_at: dict[str, datetime] = {}
        self._modified_at: dict[str, datetime] = {}

    # -- the clock ---------------------------------------------------------------------------------------------

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now

    # -- writes ------------------------------------------------------------------------------------------------

    def add(self, record_id: str, deleted: bool = False, **fields: Any) -> dict[str, Any]:
        """Put a record as given (custom `__c` fields are declared on the fly; unknown standard fields fail)."""
        stamp = sf_datetime(self.now)
        record: dict[str, Any] = {"Id": to_18(record_id), "IsDeleted": deleted, "CreatedDate": stamp,
                                  "LastModifiedDate": stamp}
        record.update(self._checked(fields))
        record.setdefault("SystemModstamp", record["LastModifiedDate"])
        key = record_id[:15]
        self._records[key] = record
        self._modified_at[key] = parse_datetime(record["SystemModstamp"])
        if deleted:
            self._deleted_at[key] = self._modified_at[key]
        return record

    def update(self, record_id: str, **fields: Any) -> dict[str, Any]:
        key = self._key(record_id)
        stamp = sf_datetime(self.now)
        record = {**self._records[key], **self._checked(fields), "LastModifiedDate": stamp, "SystemModstamp": stamp}
        self._records[key] = record
        self._modified_at[key] = self.now
        return record

    def delete(self, record_id: str, master_id: str | None = None) -> None:
        key = self._key(record_id)
        stamp = sf_datetime(self.now)
        self._records[key] = {**self._records[key], "IsDeleted": True, "LastModifiedDate": stamp,
                              "SystemModstamp": stamp, "MasterRecordId": to_18(master_id) if master_id else None}
        self._deleted_at[key] = self._modified_at[key] = self.now

    def merge(self, master_id: str, loser_id: str) -> None:
        """The loser is deleted with MasterRecordId set; the master is updated."""
        self.delete(loser_id, master_id=master_id)
        self.update(master_id)

    def generate(self, n: int, seed: int = 0, prefix: str = "G") -> list[str]:
        """`n` varied live Accounts with 18-character ids `001<prefix><digits>`, O(n); returns their ids."""
        rng = random.Random(seed)
        customs = [name for name in self.describe.types if name.endswith("__c")]
        stamp = sf_datetime(self.now)
        width = 12 - len(prefix)
        ids = []
        for i in range(n):
            key = f"001{prefix}{i:0{width}d}"
            record: dict[str, Any] = {
                "Id": to_18(key), "IsDeleted": False, "Name": f"Account {seed}-{i}", "Type": rng.choice(_TYPES),
                "Industry": rng.choice(_INDUSTRIES), "Phone": f"+1 555 {i % 10000:04d}",
                "Website": f"https://a{i}.example.com", "BillingCity": rng.choice(("Paris", "Lyon", "Austin")),
                "BillingCountry": "FR", "NumberOfEmployees": rng.randint(1, 5000),
                "AnnualRevenue": float(rng.randint(1, 1000) * 1000), "Rating": rng.choice(("Hot", "Cold", None)),
                "OwnerId": "005000000000001AAA", "CreatedDate": stamp, "LastModifiedDate": stamp,
                "SystemModstamp": stamp,
            }
            for name in customs:
                record[name] = rng.choice(("Yes", "No")) if self.describe.types[name] == "picklist" else None
            self._records[key] = record
            self._modified_at[key] = self.now
            ids.append(str(record["Id"]))
        return ids

    # -- reads -------------------------------------------------------------------------------------------------

    def get(self, record_id: str) -> dict[str, Any] | None:
        return self._records.get(record_id[:15])

    def __len__(self) -> int:
        return len(self._records)

    def select(self, query: Query, all_rows: bool) -> list[dict[str, Any]]:
        """The records a query matches, as of now (records are replaced on write, so the list is a snapshot)."""
        if query.ids is not None:
            candidates: Iterator[dict[str, Any]] = (self._records[k] for k in query.ids if k in self._records)
        else:
            candidates = iter(self._records.values())
        rows = [r for r in candidates if (all_rows or not r["IsDeleted"]) and query.matches(r)]
        if query.descending is not None or query.ids is not None:
            rows.sort(key=lambda r: r["Id"], reverse=bool(query.descending))
        return rows[: query.limit] if query.limit is not None else rows

    def updated_between(self, start: datetime, end: datetime) -> list[str]:
        return [self._records[k]["Id"] for k, at in self._modified_at.items()
                if start <= at < end and not self._records[k]["IsDeleted"]]

    def deleted_between(self, start: datetime, end: datetime) -> list[tuple[str, datetime]]:
        return [(self._records[k]["Id"], at) for k, at in self._deleted_at.items() if start <= at < end]

    def _key(self, record_id: str) -> str:
        if record_id[:15] not in self._records:
            raise KeyError(f"no Account {record_id} in the fake")
        return record_id[:15]

    def _checked(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        out = {}
        for name, value in fields.items():
            canonical = self.describe.canonical(name)
            if canonical is None:
                if not name.endswith("__c"):
                    raise ValueError(f"Account has no field {name!r} in this org (person accounts off?)")
                self.describe.declare(name, _kind_of(value))
                canonical = name
            kind = self.describe.types[canonical]
            if kind == "datetime" and value is not None:
                value = sf_datetime(parse_datetime(str(value)))
            out[canonical] = value
        return out


def _kind_of(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "double"
    return "string"
