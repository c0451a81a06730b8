"""Plain Python/numpy domain types: no web, database, model runtime or index imports."""
