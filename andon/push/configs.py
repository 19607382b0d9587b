"""A push config between its wire model (PushNotificationConfig) and its stored row."""

from __future__ import annotations

from andon.protocol.params import PushNotificationAuth, PushNotificationConfig
from andon.protocol.types import new_id
from andon.store.push import PushConfig


def to_stored(task_id: str, config: PushNotificationConfig, version: str) -> PushConfig:
    auth = config.authentication
    return PushConfig(
        task_id=task_id,
        id=config.id or new_id(),
        url=config.url,
        version=version,
        token=config.token,
        auth_scheme=auth.scheme if auth else None,
        auth_credentials=auth.credentials if auth else None,
    )


def to_wire(config: PushConfig) -> PushNotificationConfig:
    auth = (
        PushNotificationAuth(scheme=config.auth_scheme, credentials=config.auth_credentials)
        if config.auth_scheme
        else None
    )
    return PushNotificationConfig(
        url=config.url, id=config.id, token=config.token, authentication=auth
    )
