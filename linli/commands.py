"""Commands to devices (device contract `cmd`): the payload and topic, built in one place."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from typing import Any

from linli.clock import to_ms
from linli.contract import Channel, Command, topic_for

COMMAND_TTL = timedelta(minutes=5)  # a device with a clock ignores a command past expires_ts


def command_message(
    site: str, kind: str, device_id: str, action: str, params: dict[str, Any], *, now: datetime,
    ttl: timedelta = COMMAND_TTL, command_id: str | None = None,
) -> tuple[str, bytes, str]:
    """(topic, payload, command id) of a command, checked against the contract's model."""
    command = Command(id=command_id or str(uuid.uuid4()), ts=to_ms(now), action=action,  # type: ignore[arg-type]
                      params=params, expires_ts=to_ms(now + ttl))
    payload = json.dumps(command.model_dump(exclude_none=True), separators=(",", ":")).encode()
    return topic_for(site, kind, device_id, Channel.CMD), payload, command.id
