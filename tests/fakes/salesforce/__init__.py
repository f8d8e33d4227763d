"""A faithful local fake of Salesforce's REST, Collections and Bulk 2.0 APIs for Account (see server.py)."""

from tests.fakes.salesforce.server import FakeSalesforce, kind_of

__all__ = ["FakeSalesforce", "kind_of"]
