"""Command handlers, one module per area; ``relaychat.protocol.commands`` is the table."""
