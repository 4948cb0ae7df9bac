"""The PostgreSQL store: many nodes share one database; claims never block each other."""
