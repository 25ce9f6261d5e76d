"""Self-hosted execution engine for Twilio-Functions-style handlers."""

__version__ = "0.1.0"
