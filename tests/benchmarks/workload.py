"""A deterministic, realistic CDC workload: N change messages over K Account records, from one seed.

The mix (by message): ~15% CREATE, ~5% DELETE/UNDELETE, ~1% merged multi-record UPDATE (2-5 record ids),
~0.5% gap events (mostly GAP_UPDATE), ~0.1% poison (bytes that do not decode), and every other message (~78%)
an UPDATE of 1-3 fields, one in eight of them nulling a field. Each record's first message is its CREATE; once
every record exists, a CREATE is a full record carrying later data for a live record (the aggregate treats it as
a details change). Updates go to live records only, a DELETE to a live record, an UNDELETE to a deleted one.
Commit timestamps advance one second per message, so they increase per record and nothing is stale.

Formats: `pubsub` (default) is what Salesforce's Pub/Sub API delivers: raw Avro over the writer schema in
`schemas/salesforce`, bitmap `changedFields`/`nulledFields`, the schema id in a `schema_id` header. `cometd` is
the Streaming API's JSON (absent = unchanged, explicit null = nulled, ISO dates). Keys are the first record id.
"""

from __future__ import annotations

import json
import random
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from worker.adapters.salesforce.encode import bitmap_of, encode_record
from worker.adapters.salesforce.errors import ChangeEventParseError
from worker.adapters.salesforce.event_parser import parse
from worker.adapters.salesforce.schemas import SchemaResolver

SCHEMA_ID = "AccountChangeEvent-v1"
FORMATS = ("pubsub", "cometd")
START_MS = 1_750_000_000_000

# message kind -> share; UPDATE takes what is left
MIX = {"CREATE": 0.15, "DELETE/UNDELETE": 0.05, "MERGED_UPDATE": 0.01, "GAP": 0.005, "POISON": 0.001}
GAP_TYPES = ("GAP_UPDATE",) * 7 + ("GAP_CREATE", "GAP_DELETE", "GAP_UNDELETE")

INDUSTRIES = ("Energy", "Banking", "Retail", "Technology", "Healthcare", "Manufacturing", "Education",
              "Transportation", "Media", "Agriculture", "Construction", "Insurance")
CUSTOMER_TYPES = ("Customer - Direct", "Customer - Channel", "Channel Partner / Reseller", "Installation Partner",
                  "Technology Partner", "Other")
RATINGS = ("Hot", "Warm", "Cold")
SOURCES = ("Web", "Phone Inquiry", "Partner Referral", "Purchased List", "Other")
CITIES = (("Lyon", "FR"), ("Berlin", "DE"), ("Austin", "US"), ("Osaka", "JP"), ("Leeds", "GB"), ("Porto", "PT"),
          ("Turin", "IT"), ("Ghent", "BE"), ("Bergen", "NO"), ("Perth", "AU"), ("Quebec", "CA"), ("Cusco", "PE"))
STREETS = ("Main St", "High Street", "Rue de la Paix", "Hauptstrasse", "Market Sq", "Harbour Rd", "Station Rd")
WORDS = ("acme", "global", "north", "systems", "partners", "holdings", "labs", "group", "digital", "united",
         "prime", "blue", "river", "summit", "works", "trading", "energy", "solutions", "capital", "union")
# field -> weight, for the fields an UPDATE changes; the nullable ones can be nulled
UPDATE_FIELDS = {
    "Phone": 6, "Website": 3, "Industry": 3, "Rating": 4, "AnnualRevenue": 5, "NumberOfEmployees": 4,
    "Active__c": 3, "Type": 2, "BillingAddress.City": 3, "BillingAddress.Street": 3, "Description": 4,
    "OwnerId": 3, "AccountSource": 1, "Name": 1,
}
NULLABLE = ("Phone", "Website", "Industry", "Rating", "Description", "AccountSource", "BillingAddress.Street")
ADDRESS_PARTS = ("Street", "City", "State", "PostalCode", "Country", "StateCode", "CountryCode", "Latitude",
                 "Longitude", "GeocodeAccuracy")


def client_id(tag: str, index: int) -> str:
    """18 alphanumeric characters: `001` + a 2-character tag + 10 digits + `AAA`."""
    return f"001{tag[:2]:0>2}{index:010d}AAA"


class Workload:
    """Iterate :meth:`messages` for (key, value, headers); `counts` holds the realised mix afterwards."""

    def __init__(self, n: int, clients: int, seed: int, fmt: str = "pubsub", tag: str = "BN") -> None:
        if fmt not in FORMATS:
            raise ValueError(f"BENCH_FORMAT must be one of {FORMATS}, got {fmt!r}")
        self.n, self.clients, self.seed, self.fmt, self.tag = n, max(1, clients), seed, fmt, tag
        self.counts: Counter[str] = Counter()
        self.ids = [client_id(tag, i) for i in range(self.clients)]
        self._resolver = SchemaResolver()
        self._writer = self._resolver.get(SCHEMA_ID)
        self._record_names = [f["name"] for f in self._writer.raw["fields"]]
        self._bitmaps: dict[tuple[str, ...], list[str]] = {}

    # -- the sequence ------------------------------------------------------------------------------------------

    def messages(self) -> Iterator[tuple[bytes, bytes, list[tuple[str, bytes]]]]:
        rng = random.Random(self.seed)
        self.counts.clear()
        created = 0
        live: list[str] = []
        live_at: dict[str, int] = {}
        deleted: list[str] = []
        deleted_at: dict[str, int] = {}

        def add(pool: list[str], where: dict[str, int], cid: str) -> None:
            where[cid] = len(pool)
            pool.append(cid)

        def remove(pool: list[str], where: dict[str, int], cid: str) -> None:
            index = where.pop(cid)
            last = pool.pop()
            if last != cid:
                pool[index] = last
                where[last] = index

        thresholds = []
        total = 0.0
        for kind, share in MIX.items():
            total += share
            thresholds.append((total, kind))
        for i in range(self.n):
            ts = START_MS + i * 1000
            roll = rng.random()
            kind = next((k for limit, k in thresholds if roll < limit), "UPDATE")
            if not live:
                kind = "CREATE"
            if kind == "CREATE":
                if created < self.clients:
                    cid = self.ids[created]
                    created += 1
                    add(live, live_at, cid)
                    label, new = "CREATE", True
                else:
                    cid = rng.choice(live)
                    label, new = "CREATE (live record, later data)", False
                yield self._emit(label, "CREATE", [cid], self._full_record(rng, cid, new), [], [], ts, i, rng)
            elif kind == "DELETE/UNDELETE":
                if deleted and rng.random() < 0.5:
                    cid = rng.choice(deleted)
                    remove(deleted, deleted_at, cid)
                    add(live, live_at, cid)
                    yield self._emit("UNDELETE", "UNDELETE", [cid], self._full_record(rng, cid), [], [], ts, i, rng)
                elif len(live) > 1:
                    cid = rng.choice(live)
                    remove(live, live_at, cid)
                    add(deleted, deleted_at, cid)
                    yield self._emit("DELETE", "DELETE", [cid], {}, [], [], ts, i, rng)
                else:
                    yield self._update(rng, [live[0]], ts, i)
            elif kind == "MERGED_UPDATE":
                ids = rng.sample(live, min(len(live), rng.randint(2, 5)))
                yield self._update(rng, ids, ts, i, label="UPDATE (merged, several records)")
            elif kind == "GAP":
                gap = rng.choice(GAP_TYPES)
                yield self._emit(gap, gap, [rng.choice(live)], {}, [], [], ts, i, rng, origin="")
            elif kind == "POISON":
                yield self._poison(rng, rng.choice(live))
            else:
                yield self._update(rng, [rng.choice(live)], ts, i)

    def creates(self, ids: list[str]) -> Iterator[tuple[bytes, bytes, list[tuple[str, bytes]]]]:
        """One CREATE per id (warm-up traffic), timestamps before the main sequence's."""
        rng = random.Random(self.seed ^ 0x5EED)
        for i, cid in enumerate(ids):
            yield self._emit("CREATE", "CREATE", [cid], self._full_record(rng, cid, True), [], [], START_MS - 10**9 + i,
                             i, rng)

    # -- message kinds -----------------------------------------------------------------------------------------

    def _update(self, rng: random.Random, ids: list[str], ts: int, i: int,
                label: str = "UPDATE") -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
        names = list(UPDATE_FIELDS)
        weights = list(UPDATE_FIELDS.values())
        picked: list[str] = []
        for _ in range(rng.choice((1, 1, 1, 2, 2, 3))):
            name = rng.choices(names, weights)[0]
            if name not in picked:
                picked.append(name)
        nulled: list[str] = []
        if rng.random() < 0.125:
            nulled = [rng.choice(NULLABLE)]
            picked = [p for p in picked if p not in nulled]
        body = {name: self._value(rng, name, ids[0]) for name in picked}
        return self._emit(label, "UPDATE", ids, body, picked, nulled, ts, i, rng)

    def _full_record(self, rng: random.Random, cid: str, new: bool = False) -> dict[str, Any]:
        """A whole record; only a new one may be a prospect (a customer never becomes one again)."""
        city, country = rng.choice(CITIES)
        prospect = new and rng.random() < 0.2
        return {
            "Name": self._value(rng, "Name", cid),
            "Type": "Prospect" if prospect else rng.choice(CUSTOMER_TYPES),
            "Industry": rng.choice(INDUSTRIES),
            "Phone": self._value(rng, "Phone", cid),
            "Website": self._value(rng, "Website", cid),
            "BillingAddress.Street": self._value(rng, "BillingAddress.Street", cid),
            "BillingAddress.City": city,
            "BillingAddress.PostalCode": f"{rng.randrange(10_000, 99_999)}",
            "BillingAddress.Country": country,
            "BillingAddress.Latitude": round(rng.uniform(-60, 70), 6),
            "BillingAddress.Longitude": round(rng.uniform(-170, 170), 6),
            "OwnerId": self._value(rng, "OwnerId", cid),
            "AnnualRevenue": self._value(rng, "AnnualRevenue", cid),
            "NumberOfEmployees": self._value(rng, "NumberOfEmployees", cid),
            "Rating": rng.choice(RATINGS),
            "AccountSource": rng.choice(SOURCES),
            "Active__c": None if prospect else rng.choice(("Yes", "Yes", "Yes", "No")),
            "Description": self._value(rng, "Description", cid),
            "CreatedById": "005000000000001AAA",
        }

    @staticmethod
    def _value(rng: random.Random, name: str, cid: str) -> Any:
        if name == "Phone":
            return f"+1 555 {rng.randrange(10_000_000):07d}"
        if name == "Website":
            return f"https://www.{rng.choice(WORDS)}-{cid[-7:-3]}.example"
        if name == "Industry":
            return rng.choice(INDUSTRIES)
        if name == "Rating":
            return rng.choice(RATINGS)
        if name == "AnnualRevenue":
            return float(rng.randrange(10, 50_000) * 1000)
        if name == "NumberOfEmployees":
            return rng.randrange(1, 20_000)
        if name == "Active__c":
            return rng.choice(("Yes", "No"))
        if name == "Type":  # never back to Prospect: a customer cannot become a prospect again
            return rng.choice(CUSTOMER_TYPES)
        if name == "BillingAddress.City":
            return rng.choice(CITIES)[0]
        if name == "BillingAddress.Street":
            return f"{rng.randrange(1, 400)} {rng.choice(STREETS)}"
        if name == "Description":
            return " ".join(rng.choice(WORDS) for _ in range(rng.randrange(8, 40)))
        if name == "OwnerId":
            return f"005000000000{rng.randrange(100):03d}AAA"
        if name == "AccountSource":
            return rng.choice(SOURCES)
        if name == "Name":
            return f"{rng.choice(WORDS).title()} {rng.choice(WORDS).title()} {cid[-7:-3]}"
        raise KeyError(name)

    def _poison(self, rng: random.Random, key: str) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
        """Bytes that no decoder accepts (checked here, so the count of dead letters is known)."""
        self.counts["POISON"] += 1
        while True:
            if self.fmt == "cometd":
                value = b'{"channel": "/data/AccountChangeEvent", "data": {"payload": ' + rng.randbytes(24)
                headers: list[tuple[str, bytes]] = []
            else:
                value = rng.randbytes(rng.randrange(8, 120))
                headers = [("schema_id", SCHEMA_ID.encode())]
            try:
                parse(value, headers, schemas=self._resolver)
            except ChangeEventParseError:
                return key.encode(), value, headers

    # -- encoding ----------------------------------------------------------------------------------------------

    def _emit(self, label: str, change_type: str, ids: list[str], body: dict[str, Any], changed: list[str],
              nulled: list[str], ts: int, i: int, rng: random.Random,
              origin: str = "com/salesforce/api/soap/62.0;client=SfdcInternalAPI/") -> tuple[
                  bytes, bytes, list[tuple[str, bytes]]]:
        self.counts[label] += 1
        header: dict[str, Any] = {
            "entityName": "Account", "recordIds": ids, "changeType": change_type, "changeOrigin": origin,
            "transactionKey": str(uuid.UUID(int=rng.getrandbits(128), version=4)), "sequenceNumber": 1,
            "commitTimestamp": ts, "commitNumber": 10_000_000 + i, "commitUser": "005000000000001AAA",
        }
        has_data = change_type in ("CREATE", "UPDATE", "UNDELETE")
        if has_data:
            body = {**body, "LastModifiedDate": ts, "LastModifiedById": "005000000000001AAA"}
            if change_type != "UPDATE":
                body["CreatedDate"] = ts
        changed_all = ["LastModifiedDate", *changed, *nulled] if change_type == "UPDATE" else []
        if self.fmt == "cometd":
            return ids[0].encode(), self._cometd(header, body, changed_all, nulled, i), []
        return ids[0].encode(), self._pubsub(header, body, changed_all, nulled), [("schema_id", SCHEMA_ID.encode())]

    def _bitmap(self, names: list[str]) -> list[str]:
        key = tuple(names)
        found = self._bitmaps.get(key)
        if found is None:
            found = self._bitmaps[key] = bitmap_of(names, self._writer.layout)
        return found

    def _pubsub(self, header: dict[str, Any], body: dict[str, Any], changed: list[str], nulled: list[str]) -> bytes:
        record: dict[str, Any] = dict.fromkeys(self._record_names)
        record["ChangeEventHeader"] = {**header, "changedFields": self._bitmap(changed),
                                       "nulledFields": self._bitmap(nulled), "diffFields": []}
        for name, value in body.items():
            parent, _, part = name.partition(".")
            if part:
                address = record[parent] or dict.fromkeys(ADDRESS_PARTS)
                address[part] = value
                record[parent] = address
            else:
                record[name] = value
        return encode_record(self._writer.parsed, record)

    @staticmethod
    def _cometd(header: dict[str, Any], body: dict[str, Any], changed: list[str], nulled: list[str],
                i: int) -> bytes:
        payload: dict[str, Any] = {"ChangeEventHeader": {**header, "changedFields": changed}}
        for name, value in body.items():
            if name.endswith("Date") and isinstance(value, int):
                value = datetime.fromtimestamp(value / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
            parent, _, part = name.partition(".")
            if part:
                payload.setdefault(parent, {})[part] = value
            else:
                payload[name] = value
        for name in nulled:
            parent, _, part = name.partition(".")
            if part:
                payload.setdefault(parent, {})[part] = None
            else:
                payload[name] = None
        message = {"channel": "/data/AccountChangeEvent",
                   "data": {"schema": "bench-cometd", "payload": payload, "event": {"replayId": 1000 + i}}}
        return json.dumps(message, separators=(",", ":")).encode()
