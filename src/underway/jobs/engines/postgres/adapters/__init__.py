"""Enqueue inside the application's own transaction, whatever its database stack.

On PostgreSQL, ``conn=`` of :meth:`Worker.enqueue <underway.jobs.Worker.enqueue>`,
:meth:`Worker.enqueue_sync <underway.jobs.Worker.enqueue_sync>` and ``enqueue_many(_sync)``
takes the connection (or session) the application is already using. The jobs are inserted
in its current transaction: a rollback leaves no job, and the queues are notified when it
commits (never before). Nothing is committed on the application's behalf.

Supported, beside psycopg's ``Connection`` and ``AsyncConnection``:

- an asyncpg ``Connection`` (or a pool's connection), with the async enqueue;
- a SQLAlchemy ``Session`` or ``Connection`` (any PostgreSQL driver SQLAlchemy runs
  synchronously, e.g. psycopg), with either enqueue;
- a SQLAlchemy ``AsyncSession`` or ``AsyncConnection`` (psycopg or asyncpg), with the async
  enqueue;
- Django's connection (``django.db.connection`` or ``connections[alias]``) on the
  ``postgresql`` backend, inside ``transaction.atomic()``, with ``enqueue_sync``.

The object's library is recognised by the module of its class, so none of these libraries
is imported unless the application passes one of its objects. Each is an optional extra:
``underway[asyncpg]``, ``underway[sqlalchemy]``, ``underway[django]``.
"""

from __future__ import annotations

from underway.jobs.engines.postgres.adapters._dispatch import SUPPORTED, AppConnection, adapt

__all__ = ["SUPPORTED", "AppConnection", "adapt"]
