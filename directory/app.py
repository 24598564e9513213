"""Assemble a Directory from a Config: schema, store, hasher."""
from . import passwords
from .core.directory import Directory
from .core.schema import Schema
from .store import open_store


def open_directory(config) -> Directory:
    schema = Schema.load(config.schema_files)
    store = open_store(config)
    hasher = passwords.Hasher(config.password_scheme, **config.argon2)
    return Directory(config, schema, store, hasher)
