"""`sorter user add|list|remove`: the users file (auth.users_file of the line config).

Only hashes are written: the password's argon2 hash, and for `--token` the SHA-256 of a new random
API token, which is printed once and never again. A running line reads the file again when it
changes (no restart).
"""

from __future__ import annotations

import argparse
import getpass
import secrets
import sys

from sorter.controller.cli.common import load_or_exit


def _password(args) -> str | None:
    if args.password_stdin:
        pw = sys.stdin.readline().rstrip("\r\n")
    elif sys.stdin.isatty():
        pw = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != pw:
            sys.stderr.write("sorter user add: the two passwords differ\n")
            return None
    else:
        sys.stderr.write("sorter user add: no terminal to ask the password: use --password-stdin or --no-password\n")
        return None
    if len(pw) < 8:
        sys.stderr.write("sorter user add: a password needs at least 8 characters\n")
        return None
    return pw


def add_user(cfg, name: str, role: str, password: str | None, make_token: bool = False,
             keep_password: bool = False) -> tuple[str, str | None]:
    """Add or change `name` in cfg's users file: (what was done, the new token or None). Raises
    ValueError (UsersError) with the reason."""
    from argon2 import PasswordHasher

    from sorter.controller.config.auth import UserEntry, read_users_file, token_digest, write_users_file
    path = cfg.auth.users_file
    users = read_users_file(path)
    if any(u.name == name for u in cfg.auth.users):
        raise ValueError(f"{name!r} is given in the line config (auth.users): change it there")
    old = next((u for u in users if u.name == name), None)
    pw_hash = old.password_hash if old is not None and keep_password else None
    if password is not None:
        pw_hash = PasswordHasher().hash(password)
    token = secrets.token_urlsafe(32) if make_token else None
    digest = token_digest(token) if token else (old.token_sha256 if old is not None else None)
    entry = UserEntry(name=name, role=role, password_hash=pw_hash, token_sha256=digest)
    write_users_file(path, [u for u in users if u.name != name] + [entry])
    return f"{path}: {'updated' if old else 'added'} {entry.name} ({entry.role})", token


def cmd_add(args) -> int:
    cfg = load_or_exit(args.config)
    password = None
    if not args.no_password and not args.keep_password:
        password = _password(args)
        if password is None:
            return 2
    try:
        done, token = add_user(cfg, args.name, args.role, password, args.token, args.keep_password)
    except ValueError as exc:
        sys.stderr.write(f"sorter user add: {exc}\n")
        return 2
    print(done)
    if token:
        print(f"API token (shown once, keep it): {token}")
    return 0


def cmd_list(args) -> int:
    from sorter.controller.config.auth import UsersError, all_users
    cfg = load_or_exit(args.config)
    try:
        users = all_users(cfg.auth)
    except UsersError as exc:
        sys.stderr.write(f"sorter user list: {exc}\n")
        return 2
    print(f"{cfg.auth.users_file}: {len(users)} users (reading the page: {cfg.auth.read})")
    for u in users:
        print(f"  {u.name:<24} {u.role:<11} {'password' if u.password_hash else 'no password'}"
              f"{', token' if u.token_sha256 else ''}")
    return 0


def cmd_remove(args) -> int:
    from sorter.controller.config.auth import UsersError, read_users_file, write_users_file
    cfg = load_or_exit(args.config)
    try:
        users = read_users_file(cfg.auth.users_file)
    except UsersError as exc:
        sys.stderr.write(f"sorter user remove: {exc}\n")
        return 2
    kept = [u for u in users if u.name != args.name]
    if len(kept) == len(users):
        sys.stderr.write(f"sorter user remove: no user {args.name!r} in {cfg.auth.users_file}\n")
        return 2
    write_users_file(cfg.auth.users_file, kept)
    print(f"{cfg.auth.users_file}: removed {args.name}")
    return 0


def register(sub: argparse._SubParsersAction, with_config) -> None:
    from sorter.controller.config.auth import ROLES
    up = sub.add_parser("user", help="users of the page and API: add, list, remove (the users file)")
    us = up.add_subparsers(dest="user_cmd", required=True)
    sp = with_config(us.add_parser("add", help="add a user, or change one's role, password or token"))
    sp.add_argument("name")
    sp.add_argument("--role", required=True, choices=ROLES)
    sp.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    sp.add_argument("--no-password", action="store_true", help="no page login (a machine with --token only)")
    sp.add_argument("--keep-password", action="store_true", help="keep an existing user's password")
    sp.add_argument("--token", action="store_true", help="make a new API token for machines and print it once")
    sp.set_defaults(fn=cmd_add)
    sp = with_config(us.add_parser("list", help="list the users (names, roles; never hashes)"))
    sp.set_defaults(fn=cmd_list)
    sp = with_config(us.add_parser("remove", help="remove a user from the users file"))
    sp.add_argument("name")
    sp.set_defaults(fn=cmd_remove)
