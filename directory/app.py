"""Assemble a Directory from a Config: schema, store, hasher."""
from . import passwords
from .core.directory import Directory
from .core.schema import Schema
from .store.sqlite import SQLiteStore


def open_directory(config) -> Directory:
    schema = Schema.load(config.schema_files)
    config.store_path.parent.mkdir(parents=True, exist_ok=True)
    store = SQLiteStore(config.store_path, cache_entries=config.cache_entries)
    hasher = passwords.Hasher(config.password_scheme, **config.argon2)
    return Directory(config, schema, store, hasher)
