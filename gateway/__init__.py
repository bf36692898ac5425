"""The gateway: MQTT in, validated messages through the engine, tickets and time series out.

The network thread only enqueues (``gateway.broker``); one worker thread processes batches
(``gateway.pipeline``); ``gateway.runtime`` wires them to the stores and the clock.
"""
