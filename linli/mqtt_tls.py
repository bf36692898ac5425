"""MQTT over TLS for every client of the platform (gateway, API, simulator, watchdog).

An ``mqtts://`` broker URL turns TLS on; the broker's certificate is always verified (against the
system's CAs, or the CA file given) and its host name checked. A broker that asks for client
certificates (Mosquitto's ``require_certificate true``) gets the certificate and key given.
Settings: ``LINLI_MQTT_CA_FILE``, ``LINLI_MQTT_CERT_FILE``, ``LINLI_MQTT_KEY_FILE`` (``docs/security.md``).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class MqttTls:
    """What a TLS connection to the broker needs; every field empty = the system's CAs, no client certificate."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    def apply(self, client: Any) -> None:
        """``client.tls_set`` for a paho client: the broker is verified, never trusted blindly."""
        client.tls_set(ca_certs=self.ca_file, certfile=self.cert_file, keyfile=self.key_file,
                       cert_reqs=ssl.CERT_REQUIRED)


def apply_tls(client: Any, tls: bool | MqttTls | None) -> None:
    """TLS on `client` when asked: ``True`` = the system's CAs; a :class:`MqttTls` = its files."""
    if isinstance(tls, MqttTls):
        tls.apply(client)
    elif tls:
        MqttTls().apply(client)
