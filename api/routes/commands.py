"""Commands to devices (device contract `cmd`): send one, follow it, list a device's audit trail.

The API publishes a command on the device's `cmd` topic itself, over a short MQTT connection of its
own (commands are rare, and the API keeps no broker session), after storing it as `sent`. The outcome
is recorded by the gateway, which receives every `cmd/ack` of its sites with its durable session and
records it in the same transaction as the rest of the batch (``linli.storage.commands.record_ack``):
an answer that arrives while the API is down or restarting is not lost, and there is one writer.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from typing import Annotated, Any

import paho.mqtt.client as mqtt
from fastapi import APIRouter, HTTPException, Query, Request, status
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlalchemy import func, select

from api.deps import ClockDep, CurrentUser, SessionDep, SettingsDep, SitesDep, VisibleSites
from api.routes.devices import DEVICE_LOOKUP_ERRORS, DeviceIdPath, SiteQuery, resolve_device
from api.schemas_workflow import CommandPublic, CommandRequest, CommandSent, CommandsPublic
from linli.commands import command_message
from linli.mqtt_tls import apply_tls
from linli.settings import Settings
from linli.site import Device, Site
from linli.storage.commands import FAILED, DeviceCommandRow, commands_of, record_sent, status_at
from linli.storage.models import User

log = logging.getLogger(__name__)
router = APIRouter(tags=["commands"])

PUBLISH_TIMEOUT_S = 5.0
COMMANDING_ROLES = ("admin", "manager", "technician")


class PublishError(Exception):
    """The broker could not be reached, refused us, or did not confirm the command in time."""


def publish(settings: Settings, topic: str, payload: bytes, expiry_s: int) -> None:
    """Publish one QoS 1 message and wait for the broker's PUBACK. MQTT 5's message expiry lets the broker
    drop a stale command for a device without a clock (device contract)."""
    host, port, tls = settings.mqtt_host_port
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"linli-api-cmd-{uuid.uuid4().hex[:12]}",
                         protocol=mqtt.MQTTv5)
    if settings.mqtt_username:
        client.username_pw_set(settings.mqtt_username, settings.mqtt_password)
    apply_tls(client, settings.mqtt_tls if tls else None)
    properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    properties.MessageExpiryInterval = expiry_s
    try:
        client.connect(host, port, keepalive=30)
    except (OSError, ValueError) as exc:
        raise PublishError(f"the broker at {host}:{port} is not reachable ({exc})") from exc
    client.loop_start()
    try:
        info = client.publish(topic, payload, qos=1, properties=properties)
        info.wait_for_publish(timeout=PUBLISH_TIMEOUT_S)
        if not info.is_published():
            raise PublishError(f"the broker at {host}:{port} did not confirm the command within {PUBLISH_TIMEOUT_S:g} s")
    except (RuntimeError, ValueError) as exc:  # paho: not connected, queue full
        raise PublishError(f"the broker at {host}:{port} refused the command ({exc})") from exc
    finally:
        client.disconnect()
        client.loop_stop()


# ---------------------------------------------------------------- what a device accepts


ACTION_KINDS = {"set_light": ("streetlight",), "set_schedule": ("streetlight",), "set_available": ("charger",),
                "refresh": ("streetlight", "elevator", "charger")}
OFFSET_MIN = 180  # a schedule offset of more than 3 h from sunset/sunrise is a typo


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def params_problem(action: str, params: dict[str, Any]) -> str | None:
    """Why `params` are wrong for `action` (device contract), or None."""
    allowed = {"set_light": {"relay", "dim_pct"}, "set_schedule": {"on_offset_min", "off_offset_min"},
               "set_available": {"available"}, "refresh": set()}[action]
    extra = sorted(set(params) - allowed)
    if extra:
        return f"{action} takes {', '.join(sorted(allowed)) or 'no params'}, not {', '.join(extra)}"
    if action == "set_light":
        if not isinstance(params.get("relay"), bool):
            return "set_light needs relay: true or false"
        dim = params.get("dim_pct", 100)
        if not _is_number(dim) or not 0 <= dim <= 100:
            return "dim_pct is a number from 0 to 100"
    if action == "set_schedule":
        if not params:
            return "set_schedule needs on_offset_min and/or off_offset_min (minutes from sunset / sunrise)"
        for name, value in params.items():
            if not isinstance(value, int) or isinstance(value, bool) or abs(value) > OFFSET_MIN:
                return f"{name} is a whole number of minutes from -{OFFSET_MIN} to {OFFSET_MIN}"
    if action == "set_available" and not isinstance(params.get("available"), bool):
        return "set_available needs available: true or false"
    return None


def may_command(user: User, site: Site, device: Device) -> str | None:
    """Why `user` may not command `device`, or None: managers may; a technician of the team that maintains
    the device's kind (the site's routing of `offline`) may."""
    if user.role not in COMMANDING_ROLES:
        return f"a {user.role} cannot send commands"
    if user.role == "technician":
        maintainers = [t.value for t in site.teams_for("offline", device.kind)]
        if not set(user.teams or ()) & set(maintainers):
            return f"{device.kind}s are maintained by {', '.join(maintainers)}, none of your teams"
    return None


def command_public(row: DeviceCommandRow, now: datetime) -> CommandPublic:
    return CommandPublic(
        id=row.id, site=row.site, device_id=row.device_id, action=row.action, params=dict(row.params or {}),
        status=status_at(row, now), requested_by=row.requested_by, reason=row.reason, sent_at=row.sent_at,
        expires_at=row.expires_at, answered_at=row.answered_at, error=row.error,
    )


@router.post(
    "/devices/{device_id}/commands",
    response_model=CommandSent,
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        **DEVICE_LOOKUP_ERRORS,
        403: {"description": "your role or team may not command this device"},
        422: {"description": "an action the device's kind does not take, or bad params"},
        503: {"description": "the broker is not reachable: the command is recorded as failed, not sent"},
    },
)
def send_command(
    device_id: DeviceIdPath, body: CommandRequest, *, session: SessionDep, user: CurrentUser, sites: SitesDep,
    visible: VisibleSites, settings: SettingsDep, clock: ClockDep, request: Request, site: SiteQuery = None,
) -> CommandSent:
    """Publish a command to the device (manager; technician of the team maintaining its kind). Follow it
    with `GET /api/v1/commands/{id}`: `sent` until the device answers (`acked`, `failed`) or it expires."""
    found_site, device = resolve_device(sites, visible, device_id, site)
    refused = may_command(user, found_site, device)
    if refused:
        raise HTTPException(status.HTTP_403_FORBIDDEN, refused)
    if device.kind not in ACTION_KINDS[body.action]:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            f"{body.action} is for a {' or '.join(ACTION_KINDS[body.action])}, not a {device.kind}"
                            + (" (no command moves an elevator)" if device.kind == "elevator" else ""))
    problem = params_problem(body.action, body.params)
    if problem:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, problem)
    now, ttl = clock.now(), timedelta(seconds=body.ttl_s)
    topic, payload, command_id = command_message(found_site.id, device.kind, device.id, body.action, body.params,
                                                 now=now, ttl=ttl)
    row = record_sent(session, command_id=command_id, site=found_site.id, device_id=device.id, kind=device.kind,
                      action=body.action, params=body.params, requested_by=user.username, sent_at=now,
                      expires_at=now + ttl, reason=body.reason)
    session.commit()  # stored before it is published: the gateway may record the answer within milliseconds
    try:
        publish(settings, topic, payload, body.ttl_s)
    except PublishError as exc:
        log.warning("command %s to %s/%s not sent: %s", command_id, found_site.id, device.id, exc)
        row.status, row.error = FAILED, f"not sent: {exc}"[:500]
        session.commit()
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            f"the command was not sent (recorded as failed): {exc}") from exc
    log.info("command %s %s to %s/%s by %s", command_id, body.action, found_site.id, device.id, user.username)
    live = getattr(request.app.state, "live", None)
    if live is not None:
        live.note_command()  # the `command` event (docs/live-updates.md) goes out now, not at the next poll
    return CommandSent(id=command_id)


@router.get("/devices/{device_id}/commands", response_model=CommandsPublic, responses=DEVICE_LOOKUP_ERRORS)
def list_commands(
    device_id: DeviceIdPath, *, session: SessionDep, sites: SitesDep, visible: VisibleSites, clock: ClockDep,
    site: SiteQuery = None, limit: Annotated[int, Query(ge=1, le=500)] = 50, offset: Annotated[int, Query(ge=0)] = 0,
) -> CommandsPublic:
    """The device's audit trail: every command sent to it (by people and automatic actions), newest first,
    with who sent it, why, and how it ended."""
    found_site, device = resolve_device(sites, visible, device_id, site)
    total = session.scalar(select(func.count()).select_from(DeviceCommandRow).where(
        DeviceCommandRow.site == found_site.id, DeviceCommandRow.device_id == device.id)) or 0
    rows = commands_of(session, found_site.id, device.id, limit=limit, offset=offset)
    now = clock.now()
    return CommandsPublic(items=[command_public(row, now) for row in rows], total=total)


@router.get("/commands/{command_id}", response_model=CommandPublic, responses={404: {"description": "no such command"}})
def get_command(command_id: str, *, session: SessionDep, visible: VisibleSites,
                clock: ClockDep) -> CommandPublic:
    """One command and its status: `sent`, `acked`, `failed` (the device said no) or `expired`."""
    row = session.get(DeviceCommandRow, command_id[:64])
    if row is None or row.site not in visible:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"command {command_id!r} not found")
    return command_public(row, clock.now())
