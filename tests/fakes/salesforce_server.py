"""A local HTTP server that answers like Salesforce's REST API (the `tests.fakes.salesforce` package), over real
sockets, with programmable faults.

    with FakeSalesforce() as sf: ... sf.url ... sf.fail_next("query", 503, times=2) ... sf.down()

Also runs standalone for the demo: `python -m tests.fakes.salesforce_server --port N --seed-file F`.
"""

from __future__ import annotations

import argparse
import json
import threading

from tests.fakes.salesforce import FakeSalesforce

__all__ = ["FakeSalesforce"]


def main() -> None:
    parser = argparse.ArgumentParser(description="a local fake of Salesforce's REST API")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--seed-file", help="JSON list of Account REST records")
    parser.add_argument("--generate", type=int, default=0, help="also generate N Accounts")
    args = parser.parse_args()
    fake = FakeSalesforce(port=args.port)
    if args.seed_file:
        with open(args.seed_file, encoding="utf-8") as f:
            for record in json.load(f):
                fields = {k: v for k, v in record.items() if k not in ("Id", "IsDeleted", "attributes")}
                fake.add(record["Id"], bool(record.get("IsDeleted")), **fields)
    if args.generate:
        fake.generate(args.generate)
    with fake:
        print(f"fake Salesforce on {fake.url}", flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    main()
