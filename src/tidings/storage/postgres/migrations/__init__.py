"""Versioned schema scripts of the PostgreSQL driver, applied in order by ``tidings db upgrade``."""
