"""The fault engine: pure, synchronous detection from validated messages and a clock.

``Engine.observe(message, now)`` and ``Engine.tick(now)`` return decisions
(:class:`FaultRaised`, :class:`FaultCleared`); the gateway turns them into tickets.
"""

from linli.engine.decisions import Decision, FaultCleared, FaultRaised
from linli.engine.engine import DeviceLive, Engine

__all__ = ["Decision", "DeviceLive", "Engine", "FaultCleared", "FaultRaised"]
