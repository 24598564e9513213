"""Who is asking: the caller of every Directory operation (here, below the
Directory, so that the access rules and the overlays can name it without importing
directory.py)."""
from dataclasses import dataclass


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
