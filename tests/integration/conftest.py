"""Fixtures shared by the integration tests of one area live with that area; this file lends them out."""

from integration.test_api import api  # noqa: F401 - the running API over both databases, for other API tests
from integration.test_sim_broker import listen  # noqa: F401 - MQTT listeners on the shared broker, for sim tests
