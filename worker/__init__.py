"""salesforce-cdc-worker: Salesforce CDC -> event-sourced client model."""

__version__ = "0.1.0"
