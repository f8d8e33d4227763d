"""Logging in to Salesforce with simple-salesforce's SalesforceLogin for the configured auth mode."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import requests
from simple_salesforce import SalesforceLogin  # type: ignore[attr-defined]

from worker.adapters.salesforce.api_errors import SalesforceAuthError
from worker.config import SalesforceSettings

Login = Callable[[requests.Session], tuple[str, str]]  # -> (session id, instance base URL)


def login_for(settings: SalesforceSettings) -> Login:
    """simple-salesforce's SalesforceLogin for the configured auth mode; `session` uses the given id + URL."""

    def secret(value: Any) -> str | None:
        return value.get_secret_value() if value is not None else None

    def login(session: requests.Session) -> tuple[str, str]:
        mode = settings.auth.value
        if mode == "session":
            if not (settings.session_id and settings.instance_url):
                raise SalesforceAuthError("auth=session needs WORKER_SALESFORCE__SESSION_ID and __INSTANCE_URL")
            return secret(settings.session_id) or "", settings.instance_url
        kwargs: dict[str, Any] = {"session": session, "domain": settings.domain, "sf_version": settings.api_version}
        if mode == "password":
            kwargs.update(username=settings.username, password=secret(settings.password),
                          security_token=secret(settings.security_token) or "")
        elif mode == "client_credentials":
            kwargs.update(consumer_key=settings.consumer_key, consumer_secret=secret(settings.consumer_secret))
        elif mode == "jwt":
            kwargs.update(username=settings.username, consumer_key=settings.consumer_key,
                          privatekey_file=settings.private_key_file)
        else:
            raise SalesforceAuthError(f"no Salesforce auth configured (WORKER_SALESFORCE__AUTH={mode})")
        session_id, instance = SalesforceLogin(**kwargs)
        return session_id, f"https://{instance}"

    return login
