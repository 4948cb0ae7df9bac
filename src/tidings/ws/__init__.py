"""The WebSocket transport: Zaqar's JSON/MessagePack frames over the same operations."""
