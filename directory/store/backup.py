"""Online backup and restore of the SQLite store (`rollcall backup`, `rollcall restore`).

A backup is taken with SQLite's online backup API from a connection of its own: one
read transaction, so it is a consistent snapshot (every write committed before it
began, none after), and in WAL mode the server's writers go on meanwhile. The file
written is a tar of two members, MANIFEST.json (format, schema version, entry count,
SHA-256 and size of the database) and rollcall.db (the database in rollback-journal
mode, one self-contained file). It is written under a temporary name and renamed:
a backup that was interrupted never looks like a complete one.

Restore checks the manifest and the checksum before anything is written, puts the
database at store.path only when nothing is there (never over a live store), and
checks SQLite's own integrity of the result.

The PostgreSQL store is backed up by PostgreSQL's tools (pg_dump, or a base backup
with WAL archiving for point-in-time recovery): both commands say so.
"""
import hashlib
import io
import json
import os
import socket
import sqlite3
import tarfile
import time
from pathlib import Path

from .base import StoreError
from .sqlite import SCHEMA_VERSION

FORMAT = "rollcall-backup/1"
DB_MEMBER = "rollcall.db"
MANIFEST = "MANIFEST.json"
CHUNK = 1 << 20

POSTGRES_ADVICE = ("store.backend is postgresql: back it up with PostgreSQL's own tools, "
                   "`pg_dump -Fc` for a logical copy or a base backup with WAL archiving (point-in-time "
                   "recovery); `rollcall export -o FILE.ldif` writes the directory as LDIF, which "
                   "`rollcall load` reads into any store")


class BackupError(StoreError):
    """A backup or restore refused, with what to do about it."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def backup(config, out: Path) -> dict:
    """Write a backup of the configured store to `out`; returns its manifest."""
    if getattr(config, "store_backend", "sqlite") != "sqlite":
        raise BackupError(POSTGRES_ADVICE)
    source = Path(config.store_path)
    if not source.exists():
        raise BackupError(f"no store at {source} (store.path): nothing to back up")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    db_tmp = out.with_name(out.name + ".db-partial")
    tar_tmp = out.with_name(out.name + ".partial")
    for p in (db_tmp, tar_tmp):
        p.unlink(missing_ok=True)
    started = time.time()
    try:
        src = sqlite3.connect(source, timeout=30.0)  # read only by the backup (it exists: checked above)
        dst = sqlite3.connect(db_tmp)
        try:
            # pages=-1: the whole database in one step, i.e. one read transaction of a
            # WAL database: a snapshot; writers are not blocked meanwhile
            src.backup(dst, pages=-1)
            entries = dst.execute("SELECT count(*) FROM entries").fetchone()[0]
            last_change = dst.execute("SELECT max(seq) FROM changelog").fetchone()[0]
            dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
        except sqlite3.Error as exc:
            raise BackupError(f"cannot back up {source}: {exc} (is store.path a Rollcall store?)") from None
        finally:
            src.close()
            dst.close()
        manifest = {
            "format": FORMAT,
            "backend": "sqlite",
            "schema_version": SCHEMA_VERSION,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "host": socket.gethostname(),
            "source": str(source),
            "suffix": config.suffix,
            "entries": entries,
            "last_change": last_change,
            "size": db_tmp.stat().st_size,
            "sha256": _sha256(db_tmp),
        }
        data = json.dumps(manifest, indent=2).encode() + b"\n"
        with tarfile.open(tar_tmp, "w") as tar:
            info = tarfile.TarInfo(MANIFEST)
            info.size, info.mtime, info.mode = len(data), int(started), 0o600
            tar.addfile(info, io.BytesIO(data))
            tar.add(db_tmp, arcname=DB_MEMBER)
        with open(tar_tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tar_tmp, 0o600)  # it holds every password hash
        os.replace(tar_tmp, out)
    finally:
        db_tmp.unlink(missing_ok=True)
        tar_tmp.unlink(missing_ok=True)
    return manifest


def read_manifest(path: Path) -> dict:
    """The backup's manifest, checked for format and schema version (not yet its data)."""
    try:
        with tarfile.open(path, "r") as tar:
            member = tar.getmember(MANIFEST)
            manifest = json.loads(tar.extractfile(member).read())
            tar.getmember(DB_MEMBER)
    except FileNotFoundError:
        raise BackupError(f"{path}: no such file") from None
    except (tarfile.TarError, KeyError, ValueError, OSError) as exc:
        raise BackupError(f"{path} is not a Rollcall backup, or it is damaged ({exc})") from None
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{path}: unknown backup format {manifest.get('format')!r} (this Rollcall reads {FORMAT})")
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise BackupError(f"{path}: made with store schema version {manifest.get('schema_version')}, this Rollcall "
                          f"uses {SCHEMA_VERSION}: restore it with the release that made it")
    return manifest


def restore(config, path: Path) -> dict:
    """Put the backup at `path` into the configured store path, which must be empty."""
    if getattr(config, "store_backend", "sqlite") != "sqlite":
        raise BackupError(POSTGRES_ADVICE)
    path = Path(path)
    manifest = read_manifest(path)
    target = Path(config.store_path)
    present = [p for p in (target, Path(f"{target}-wal"), Path(f"{target}-shm"))
               if p.exists() and p.stat().st_size > 0]
    if present:
        raise BackupError(f"{target} already holds a store (store.path): restore refuses to overwrite one. "
                          "Stop the server, move the old files aside (keep them until the restore is "
                          "checked), then run restore again")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".restore-partial")
    try:
        h = hashlib.sha256()
        with tarfile.open(path, "r") as tar, open(partial, "wb") as out:
            src = tar.extractfile(DB_MEMBER)
            while chunk := src.read(CHUNK):
                h.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if h.hexdigest() != manifest["sha256"]:
            raise BackupError(f"{path} is damaged: its database does not match the checksum in its manifest "
                              "(nothing was restored); use another backup")
        conn = sqlite3.connect(partial)
        try:
            check = conn.execute("PRAGMA integrity_check").fetchone()[0]
            conn.execute("PRAGMA journal_mode=WAL")  # as the server runs it
        finally:
            conn.close()
        if check != "ok":
            raise BackupError(f"{path}: SQLite's integrity check failed ({check}); nothing was restored")
        for p in (target, Path(f"{target}-wal"), Path(f"{target}-shm")):
            p.unlink(missing_ok=True)  # empty leftovers only (checked above)
        os.replace(partial, target)
    except (tarfile.TarError, OSError) as exc:
        raise BackupError(f"{path} could not be read, or it is damaged ({exc}); nothing was restored") from None
    finally:
        partial.unlink(missing_ok=True)
    return manifest
