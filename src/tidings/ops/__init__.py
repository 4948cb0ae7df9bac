"""Transport-agnostic operations: one function per API action."""
