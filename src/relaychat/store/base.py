"""The storage interface, and how a server opens its backend.

The Protocols live in :mod:`relaychat.protocol.storage` so that the sans-I/O
core can name them without importing any backend; this module re-exports them
for backend code and opens the configured backend (``open_store``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from relaychat.protocol.storage import (
    AccountRecord,
    AccountStore,
    ScramCredentials,
    Store,
    StoreClosed,
    StoreError,
)

if TYPE_CHECKING:
    from relaychat.config import StoreConfig

__all__ = [
    "AccountRecord",
    "AccountStore",
    "ScramCredentials",
    "Store",
    "StoreClosed",
    "StoreError",
    "open_store",
]


def open_store(config: StoreConfig) -> Store:
    """The backend ``[store]`` names, opened and migrated (SQLite: the only one
    yet). Raises :class:`StoreError` naming the file when it cannot be used."""
    from relaychat.store.sqlite import SQLiteStore

    return SQLiteStore(
        config.path,
        synchronous=config.synchronous,
        commit_rows=config.commit_rows,
        commit_ms=config.commit_ms,
    )
