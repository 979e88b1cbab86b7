"""API tokens: random secrets shown once, stored only as a SHA-256 hash.

The secrets carry 256 bits of entropy, so a fast hash is enough: there is
nothing to brute-force that a slow hash would protect.
"""

from __future__ import annotations

import hashlib
import secrets
import unicodedata

TOKEN_PREFIX = "gj_"
MAX_TENANT_CHARS = 100


def tenant_name(raw: str) -> str:
    """`raw` without surrounding white space, if it can name a tenant: 1 to 100
    characters, none a control or format character. A tenant's name is shown inside
    one-line messages ("aborted by token 1a2b (tenant x)") and in `token list`'s rows: a
    newline or an escape sequence in it would forge lines there."""
    name = raw.strip()
    if not name:
        raise ValueError("a tenant name must not be empty")
    if name == "*":
        raise ValueError("'*' is not a tenant: it names the default limits of every tenant")
    if len(name) > MAX_TENANT_CHARS:
        raise ValueError(f"a tenant name has at most {MAX_TENANT_CHARS} characters")
    bad = next((char for char in name if unicodedata.category(char).startswith("C")), None)
    if bad is not None:
        raise ValueError(f"a tenant name must not contain control characters ({bad!r})")
    return name


def new_secret() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()
