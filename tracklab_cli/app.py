"""The Typer app: every command registered here, explicitly, in the order ``--help`` lists them.
Each command parses, calls one library function, renders, and maps library errors to one line on
stderr and an exit code (0 ok, 1 not found / store error, 2 usage)."""

from __future__ import annotations

import typer

from tracklab_cli.commands import logs_tag as context_cmds
from tracklab_cli.commands import run as run_cmd
from tracklab_cli.commands import show as show_cmds
from tracklab_cli.commands import ui as ui_cmd
from tracklab_cli.commands import views

app = typer.Typer(
    name="tracklab",
    help="Know what your hardware did during a training run.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

# the child's own options follow `--`: nothing after the command is tracklab's
app.command(context_settings={"allow_interspersed_args": False})(run_cmd.run)
app.command()(show_cmds.show)
app.command("ls")(show_cmds.ls)
for _command in (context_cmds.logs, context_cmds.tag, views.watch, views.plot, views.report,
                 views.compare, views.export, views.rm):
    app.command()(_command)
app.command("ui")(ui_cmd.ui)
