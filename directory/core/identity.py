"""Who is asking: the caller of every Directory operation (here, below the
Directory, so that the access rules and the overlays can name it without importing
directory.py)."""
import hashlib
import ipaddress
from dataclasses import dataclass

# The web console binds a rebuilt session's connection (another host signed the person
# in) with this prefix + the session id instead of a password: server/listener.py
# accepts it from a loopback peer for a live session record of the same DN.
SESSION_TICKET = b"{ROLLCALL-SESSION}"


def is_loopback(host: str) -> bool:
    """A loopback address (127.0.0.0/8, ::1, or IPv4-mapped 127.x): where a session
    ticket may come from."""
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


def session_key(session_id: str) -> str:
    """What a session is stored under: never the id itself (a database reader must not
    be able to take over sessions)."""
    return hashlib.sha256(session_id.encode("utf-8")).hexdigest()


@dataclass
class Identity:
    """Who is asking. `ndn` is '' for anonymous."""

    dn: str = ""
    ndn: str = ""
    is_root: bool = False
    peer: str = "internal"
    tls: bool = False
    entry_id: int | None = None
    # must change the password first (after an administrator's reset, or PENDING):
    # only Password Modify on itself, WhoAmI and unbind are allowed
    restricted: bool = False

    @property
    def anonymous(self):
        return not self.ndn


ANONYMOUS = Identity()
