"""The SQLite state store: the only package that touches the database."""
