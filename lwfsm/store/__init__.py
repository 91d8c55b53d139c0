"""Session stores: a conversation's state survives restarts and moves between processes and hosts.

`open_store("memory://" | "sqlite:///sessions.db" | "redis://user:pw@host:6379/0" | "redis+sentinel://..." |
"redis+cluster://...")` gives a `Store`:
read a conversation's row with its version, write it only if the version is still the one read
(compare-and-set), list, delete, and expire (a TTL). Only the Redis backend imports a third-party
package (redis-py), and only when a redis:// URL is opened.
"""

from .base import SCHEMES, Row, Store, open_store, redact
from .rows import call_key, encode, load

__all__ = ["SCHEMES", "Row", "Store", "call_key", "encode", "load", "open_store", "redact"]
