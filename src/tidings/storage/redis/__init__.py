"""The Redis store (standalone or cluster); Lua scripts live in ``lua/``."""
