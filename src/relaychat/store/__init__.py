"""Storage backends behind :mod:`relaychat.store.base` (SQLite is the default)."""
