"""``weir users`` and ``weir tokens``: manage who may call Weir, through the REST API.

Like every command that reads or changes state, these work against any Weir with ``--url`` and
``--token`` (or ``WEIR_API_URL`` and ``WEIR_TOKEN``). A password is never a command-line argument
(it would land in shell history and ``ps``): it is asked for with a hidden prompt, or read from
standard input with ``--password-stdin``.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from rich.table import Table

from weir.remote import DEFAULT_URL, Token, Url, call_api, console, errors

__all__ = ["tokens_app", "users_app"]

users_app = typer.Typer(help="Manage users and their roles (admin).", no_args_is_help=True)
tokens_app = typer.Typer(help="Create, list and revoke API tokens.", no_args_is_help=True)

ROLES = ("admin", "operator", "viewer")
ROLE_HELP = "admin, operator or viewer."


def _checked_role(role: str) -> str:
    if role not in ROLES:
        errors.print(f"[red]Unknown role {role!r}[/]: use admin, operator or viewer.")
        raise typer.Exit(2)
    return role


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    password: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return password


@users_app.command("create")
def create_user(
    username: str,
    role: Annotated[str, typer.Option(help=ROLE_HELP)] = "viewer",
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
    no_password: Annotated[
        bool, typer.Option("--no-password", help="A service account: API tokens only, no login.")
    ] = False,
    url: Url = DEFAULT_URL,
    token: Token = "",
) -> None:
    """Create USERNAME with a role, asking for its dashboard password (hidden)."""
    body: dict[str, Any] = {"username": username, "role": _checked_role(role)}
    if not no_password:
        body["password"] = _read_password(password_stdin)
    created = call_api("POST", url, token, "/api/v1/users", json=body)
    console.print(f"Created user [bold]{created['username']}[/] ({created['role']}).")


@users_app.command("list")
def list_users(url: Url = DEFAULT_URL, token: Token = "") -> None:
    """List users, their roles and whether they are enabled."""
    body = call_api("GET", url, token, "/api/v1/users", params={"limit": 1000})
    table = Table("user", "role", "password", "enabled", "created")
    for u in body["users"]:
        table.add_row(u["username"], u["role"], "yes" if u["has_password"] else "no",
                      "no" if u["disabled"] else "yes", u["created_at"])  # fmt: skip
    console.print(table)


def _set_disabled(username: str, disabled: bool, url: str, token: str) -> None:
    call_api("PATCH", url, token, f"/api/v1/users/{username}", json={"disabled": disabled})
    console.print(f"{username} is now {'disabled' if disabled else 'enabled'}.")


@users_app.command("disable")
def disable_user(username: str, url: Url = DEFAULT_URL, token: Token = "") -> None:
    """Disable USERNAME: its tokens and logins are refused until it is enabled again."""
    _set_disabled(username, True, url, token)


@users_app.command("enable")
def enable_user(username: str, url: Url = DEFAULT_URL, token: Token = "") -> None:
    """Enable USERNAME again (its unexpired, unrevoked tokens work again)."""
    _set_disabled(username, False, url, token)


@tokens_app.command("create")
def create_token(
    name: Annotated[str, typer.Option(help="What the token is for.")],
    user: Annotated[
        str | None, typer.Option(help="Whose token (admins; default: yours). It has their role.")
    ] = None,
    expires_in_days: Annotated[
        int | None, typer.Option(help="Expire after this many days.")
    ] = None,
    url: Url = DEFAULT_URL,
    token: Token = "",
) -> None:
    """Create an API token and print it on the last line (it is shown only once)."""
    body: dict[str, Any] = {"name": name}
    if user is not None:
        body["username"] = user
    if expires_in_days is not None:
        body["expires_in_days"] = expires_in_days
    created = call_api("POST", url, token, "/api/v1/tokens", json=body)
    expiry = f"expires {created['expires_at']}" if created["expires_at"] else "never expires"
    errors.print(f"Token {created['id']} of {created['username']} ({expiry}); keep it safe:")
    console.print(created["token"])


@tokens_app.command("list")
def list_tokens(
    user: Annotated[str | None, typer.Option(help="Only this user's (admins).")] = None,
    url: Url = DEFAULT_URL,
    token: Token = "",
) -> None:
    """List your tokens (an admin: everyone's), never their values."""
    params: dict[str, Any] = {"limit": 1000}
    if user is not None:
        params["username"] = user
    body = call_api("GET", url, token, "/api/v1/tokens", params=params)
    table = Table("id", "name", "user", "active", "created", "expires")
    for t in body["tokens"]:
        table.add_row(str(t["id"]), t["name"], t["username"], "yes" if t["is_active"] else "no",
                      t["created_at"], t["expires_at"] or "never")  # fmt: skip
    console.print(table)


@tokens_app.command("revoke")
def revoke_token(token_id: int, url: Url = DEFAULT_URL, token: Token = "") -> None:
    """Revoke token TOKEN_ID (see `weir tokens list`); it stops working at once."""
    call_api("DELETE", url, token, f"/api/v1/tokens/{token_id}")
    console.print(f"Token {token_id} is revoked.")
