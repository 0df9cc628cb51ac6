"""``weir connections`` and ``weir variables``: manage them through the REST API, like every CLI
command that reads or changes state (``--url`` and ``--token``, or ``WEIR_API_URL`` and
``WEIR_TOKEN``). Secrets never need to be on the command line: ``--password-stdin`` or a hidden
prompt for passwords, standard input or a hidden prompt for variable values.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any
from urllib.parse import quote

import typer
from rich.markup import escape
from rich.table import Table

from weir.errors import InvalidRequest
from weir.remote import DEFAULT_URL, Token, Url, call_api, console, errors
from weir.resources import Connection

__all__ = ["connections_app", "variables_app"]

connections_app = typer.Typer(
    help="Credentials for external systems (passwords never shown).", no_args_is_help=True
)
variables_app = typer.Typer(help="Named settings tasks read.", no_args_is_help=True)

Uri = Annotated[
    str | None,
    typer.Argument(help="type://login@host:port/schema?extra=value (a password here is allowed "
                   "but ends up in your shell history; prefer --password-stdin)."),
]  # fmt: skip
PasswordStdin = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from standard input.")
]
PromptPassword = Annotated[
    bool, typer.Option("--prompt-password", help="Ask for the password without echoing it.")
]


def _item(collection: str, name: str) -> str:
    """The URL path of one connection or variable (the name percent-encoded, slashes included)."""
    return f"/api/v1/{collection}/{quote(name, safe='')}"


def _read_stdin() -> str:
    """Standard input without its final newline (``echo secret | weir …``)."""
    text = sys.stdin.read()
    return text[:-1] if text.endswith("\n") else text


def _password(from_stdin: bool, prompt: bool) -> str | None:
    if from_stdin:
        return _read_stdin()
    if prompt:
        secret: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
        return secret
    return None


def _parse_uri(conn_id: str, uri: str | None) -> dict[str, Any]:
    if uri is None:
        return {}
    try:
        parsed = Connection.from_uri(conn_id, uri)
    except InvalidRequest as error:
        errors.print(f"[red]error:[/] {escape(str(error))}")
        raise typer.Exit(2) from error
    fields = {"conn_type": parsed.conn_type, "host": parsed.host, "port": parsed.port,
              "login": parsed.login, "schema": parsed.schema, "password": parsed.password,
              "extra": parsed.extra or None}  # fmt: skip
    return {name: value for name, value in fields.items() if value is not None}


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        errors.print(f"[red]--extra is not valid JSON[/]: {error}. Example: --extra "
                     "'{\"sslmode\": \"require\"}'")  # fmt: skip
        raise typer.Exit(2) from error
    if not isinstance(value, dict):
        errors.print("[red]--extra must be a JSON object[/], e.g. '{\"timeout\": 30}'.")
        raise typer.Exit(2)
    return value


@connections_app.command("add")
def add_connection(
    conn_id: str,
    uri: Uri = None,
    conn_type: Annotated[str | None, typer.Option(help="postgres, http, s3, …")] = None,
    host: Annotated[str | None, typer.Option()] = None,
    port: Annotated[int | None, typer.Option()] = None,
    login: Annotated[str | None, typer.Option()] = None,
    schema: Annotated[str | None, typer.Option(help="Database or path.")] = None,
    extra: Annotated[str | None, typer.Option(help="A JSON object of further settings.")] = None,
    description: Annotated[str | None, typer.Option()] = None,
    password_stdin: PasswordStdin = False,
    prompt_password: PromptPassword = False,
    url: Url = DEFAULT_URL,
    token: Token = "",
) -> None:
    """Add connection CONN_ID from a URI, from options, or both (options win)."""
    body: dict[str, Any] = {"conn_id": conn_id, **_parse_uri(conn_id, uri)}
    options = {"conn_type": conn_type, "host": host, "port": port, "login": login,
               "schema": schema, "description": description,
               "extra": _json_object(extra) if extra is not None else None,
               "password": _password(password_stdin, prompt_password)}  # fmt: skip
    body.update({name: value for name, value in options.items() if value is not None})
    if "conn_type" not in body:
        errors.print("[red]error:[/] give a URI (postgresql://…) or --conn-type.")
        raise typer.Exit(2)
    created = call_api("POST", url, token, "/api/v1/connections", json=body)
    console.print(f"Added connection [bold]{escape(conn_id)}[/] ({escape(created['conn_type'])}"
                  f"{', with a password' if created['password_set'] else ''}).")  # fmt: skip


@connections_app.command("list")
def list_connections(
    conn_type: Annotated[str | None, typer.Option(help="Only connections of this type.")] = None,
    url: Url = DEFAULT_URL,
    token: Token = "",
) -> None:
    """List connections (passwords never shown)."""
    params = {"conn_type": conn_type} if conn_type else {}
    body = call_api("GET", url, token, "/api/v1/connections", params={**params, "limit": 1000})
    table = Table("id", "type", "host", "port", "login", "schema", "password")
    for c in body["connections"]:
        table.add_row(escape(c["conn_id"]), escape(c["conn_type"]), escape(c["host"] or ""),
                      str(c["port"] or ""), escape(c["login"] or ""), escape(c["schema"] or ""),
                      "set" if c["password_set"] else "")  # fmt: skip
    console.print(table)
    if body["total"] > len(body["connections"]):
        console.print(f"({len(body['connections'])} of {body['total']} shown)")


@connections_app.command("get")
def get_connection(conn_id: str, url: Url = DEFAULT_URL, token: Token = "") -> None:
    """Show connection CONN_ID as JSON (password and extra values masked)."""
    console.print_json(data=call_api("GET", url, token, _item("connections", conn_id)))


@connections_app.command("delete")
def delete_connection(conn_id: str, url: Url = DEFAULT_URL, token: Token = "") -> None:
    """Delete connection CONN_ID."""
    call_api("DELETE", url, token, _item("connections", conn_id))
    console.print(f"Deleted connection [bold]{escape(conn_id)}[/].")


@variables_app.command("set")
def set_variable(
    key: str,
    value: Annotated[
        str | None,
        typer.Argument(help="Omit it to read the value from standard input (or a hidden prompt)."),
    ] = None,
    description: Annotated[str | None, typer.Option()] = None,
    secret: Annotated[
        bool | None,
        typer.Option(
            "--secret/--not-secret",
            help="Mask the value everywhere. Default: secret if the key looks secret.",
        ),
    ] = None,
    url: Url = DEFAULT_URL,
    token: Token = "",
) -> None:
    """Create variable KEY or replace its value."""
    if value is None:
        value = typer.prompt("Value", hide_input=True) if sys.stdin.isatty() else _read_stdin()
    body: dict[str, Any] = {"value": value, "description": description}
    if secret is not None:
        body["is_secret"] = secret
    stored = call_api("PUT", url, token, _item("variables", key), json=body)
    kind = "secret variable" if stored["is_secret"] else "variable"
    console.print(f"Set {kind} [bold]{escape(key)}[/].")


@variables_app.command("get")
def get_variable(key: str, url: Url = DEFAULT_URL, token: Token = "") -> None:
    """Print the value of variable KEY (*** for a secret one: the API never shows those)."""
    typer.echo(call_api("GET", url, token, _item("variables", key))["value"])


@variables_app.command("list")
def list_variables(url: Url = DEFAULT_URL, token: Token = "") -> None:
    """List variables (secret values masked)."""
    body = call_api("GET", url, token, "/api/v1/variables", params={"limit": 1000})
    table = Table("key", "value", "secret", "description")
    for v in body["variables"]:
        table.add_row(escape(v["key"]), escape(v["value"]), "yes" if v["is_secret"] else "",
                      escape(v["description"] or ""))  # fmt: skip
    console.print(table)
    if body["total"] > len(body["variables"]):
        console.print(f"({len(body['variables'])} of {body['total']} shown)")


@variables_app.command("delete")
def delete_variable(key: str, url: Url = DEFAULT_URL, token: Token = "") -> None:
    """Delete variable KEY."""
    call_api("DELETE", url, token, _item("variables", key))
    console.print(f"Deleted variable [bold]{escape(key)}[/].")
