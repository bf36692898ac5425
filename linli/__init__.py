"""Linli (邻里): the shared domain of the community facility monitor.

Pure code lives here: the site model, the device contract, the fault catalog, the
fault engine and the ticket state machine. The MQTT client, HTTP server and
simulator live in their own top-level packages and import from this one only.
"""

__version__ = "0.1.0"
