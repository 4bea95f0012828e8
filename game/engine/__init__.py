"""The pure rules engine: plain data and transitions, no I/O (see docs/architecture.md)."""
