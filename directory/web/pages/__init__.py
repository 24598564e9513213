"""Console pages; importing this package registers their routes."""
from . import account, photos, requests, students  # noqa: F401
