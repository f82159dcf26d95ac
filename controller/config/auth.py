"""Who may do what on the page and the API: the `auth:` section of the line config and the users
file it names.

Roles are ordered: a `technician` may do everything a `supervisor` may, a `supervisor` everything
a `viewer` may. Passwords are never stored, only their argon2 hashes (written by `sorter user add`);
a user's machine token is stored as its SHA-256 (a token is 32 random bytes, so a fast hash is
enough: nobody can guess one from its hash).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError

from sorter.controller.config.base import Strict

ROLES = ("viewer", "supervisor", "technician")
Role = Literal["viewer", "supervisor", "technician"]
USERS_FILE_NAME = "users.yaml"


def role_rank(role: str) -> int:
    """0 viewer, 1 supervisor, 2 technician; -1 for anything else."""
    return ROLES.index(role) if role in ROLES else -1


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


class UserEntry(Strict):
    """One person (or machine) who may log in to the page or call the API."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.@-]{1,64}$",
                      description="login name (letters, digits, _ . @ -, up to 64), e.g. wang.li")
    role: Role = Field(description="viewer (reads), supervisor (chutes, pause/resume, alarms, keying) or "
                                   "technician (also test modes, routes reload, I/O commissioning)")
    password_hash: str | None = Field(default=None, max_length=400,
                                      description="argon2 hash of the password, as `sorter user add` writes it "
                                                  "(never the password); none = this user cannot log in to the page")
    token_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$",
                                     description="SHA-256 (hex) of the user's API token for machines "
                                                 "(`Authorization: Bearer <token>`); `sorter user add --token` "
                                                 "makes one and prints it once")


class AuthConfig(Strict):
    """Users, roles and whether reading the page needs a login. Control always needs a user (or the
    SORTER_API_TOKEN machine token, which has the technician's rights)."""

    read: Literal["open", "login"] = Field(default="open",
                                           description="open = anyone on the LAN may read the page and GET the "
                                                       "API; login = a viewer (or better) must log in first")
    users_file: Path | None = Field(default=None,
                                    description="YAML file of the users (`users:` list, written by `sorter user "
                                                "add`), relative to this file; none = users.yaml beside the "
                                                "records database. A missing file is no users")
    users: list[UserEntry] = Field(default_factory=list, max_length=500,
                                   description="users given in this file (the users file adds to them; a name "
                                               "in both is refused)")
    session_hours: float = Field(default=12, ge=0.1, le=168,
                                 description="a login lasts this long without use, hours (a shift plus margin)")

    def resolved(self, base: Path, records_database: Path) -> "AuthConfig":
        path = base / self.users_file if self.users_file is not None else \
            Path(records_database).parent / USERS_FILE_NAME
        return self.model_copy(update={"users_file": path})


class UsersFile(Strict):
    users: list[UserEntry] = Field(default_factory=list)


class UsersError(ValueError):
    """A users file that cannot be used; the message names the file and the entry."""


def read_users_file(path: Path) -> list[UserEntry]:
    """The users of `path` ([] when it does not exist)."""
    p = Path(path)
    if not p.exists():
        return []
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise UsersError(f"{p}: cannot read the users file: {exc}") from None
    if not isinstance(data, dict):
        raise UsersError(f"{p}: the users file must be a mapping with a `users:` list")
    try:
        return list(UsersFile.model_validate(data).users)
    except ValidationError as exc:
        parts = [f"{p}: {'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors()[:10]]
        raise UsersError("\n".join(parts)) from None


def all_users(auth: AuthConfig) -> list[UserEntry]:
    """The config's users and the users file's, names unique."""
    users = list(auth.users)
    if auth.users_file is not None:
        users += read_users_file(auth.users_file)
    seen: set[str] = set()
    for u in users:
        if u.name in seen:
            raise UsersError(f"user {u.name!r} is given twice (auth.users and {auth.users_file})")
        seen.add(u.name)
    return users


def write_users_file(path: Path, users: list[UserEntry]) -> None:
    """Replace the users file whole (written beside, then renamed: never half a file)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    data = {"users": [u.model_dump(exclude_none=True) for u in users]}
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text("# written by `sorter user add`: password and token hashes only\n" +
                   yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    tmp.chmod(0o600)
    tmp.replace(p)
