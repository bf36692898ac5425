"""Notifications: telling the people of a ticket's teams about it through the channels each team has.

- ``linli.notify.config``: the channel configurations a site file lists per team (WeCom, DingTalk,
  Feishu, SMS gateway, generic webhook, e-mail).
- ``linli.notify.render``: the message, pure: Chinese first, English by the channel's ``lang``.
- ``linli.notify.outbox``: :func:`~linli.notify.outbox.channels_for` picks a ticket's channels,
  :func:`~linli.notify.outbox.enqueue` adds one outbox row per channel and recipient.
- ``linli.notify.dispatcher``: :class:`~linli.notify.dispatcher.Dispatcher` sends what is due,
  retries with backoff and records every attempt on the ticket.

This package's ``__init__`` imports nothing else: ``linli.site`` imports ``linli.notify.config``.
"""
