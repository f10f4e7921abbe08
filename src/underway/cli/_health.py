"""``underway health``: whether the database answers, its schema is current and a node is
alive, as an exit status (0 healthy, 1 not, 2 bad usage) for probes and scripts.

It reads the database on a short connection of its own and changes nothing: it never
migrates (a database that needs migrations is reported unhealthy, with the migrations
named), and never creates a SQLite file.
"""

from __future__ import annotations

import json

import click

from underway.cli._jobs import AppError, open_jobs, target_options
from underway.errors import ConfigError
from underway.jobs import Health

__all__ = ["health_command"]


def _lines(health: Health) -> list[str]:
    """One line per check (``ok`` or ``FAILED``, its name, what was found), then a verdict."""
    width = max(len(check.name) for check in health.checks)
    lines = [
        f"{'ok' if check.ok else 'FAILED':<6} {check.name:<{width}}  {check.detail}"
        for check in health.checks
    ]
    failed = len(health.problems)
    lines.append("healthy" if health.ok else f"unhealthy: {failed} check(s) failed")
    return lines


@click.command("health")
@target_options
@click.option(
    "--node",
    metavar="NAME",
    help="Also check that this node heartbeats (within the app's rescue_after).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=5.0,
    show_default=True,
    metavar="SECONDS",
    help="Give up on a database that does not answer within this time (reported).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@click.pass_context
def health_command(
    ctx: click.Context,
    app: str | None,
    database: str | None,
    node: str | None,
    timeout: float,
    as_json: bool,
) -> None:
    """Check the database (reachable, migrations current) and, with --node, a node.

    Exits 0 when every check passes and 1 when one fails (each failed check is printed
    with its reason); nothing is migrated or created. --node takes the name the node
    runs under (`underway start --node-name NAME`).
    """
    with open_jobs(app, database, must_exist=False) as jobs:
        try:
            health = jobs.health_sync(node=node, timeout=timeout)
        except ConfigError as exc:
            raise AppError(str(exc)) from None
    if as_json:
        click.echo(json.dumps(health.to_dict()))
    else:
        for line in _lines(health):
            click.echo(line)
    ctx.exit(0 if health.ok else 1)
