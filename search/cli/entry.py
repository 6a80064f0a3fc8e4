"""`hwnas`'s entry point: runs a command and turns the errors a user can cause into one line
and exit status 2.

Only the commands' registration is imported here (light modules); each command imports its
service, and with it JAX, Optuna or SQLAlchemy, when it runs, so `hwnas --help` is fast.
"""

from __future__ import annotations

import sys
from importlib import import_module

import typer
from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError

from hwnas.exceptions import shown
from hwnas.search.cli.app import app
from hwnas.search.output import EXIT_USER_ERROR, fail, is_user_error, show_logs
from hwnas.supernet.host_memory import allow_restart

# The modules whose commands register on `app`, in the order `hwnas --help` lists them.
for _name in ("run_commands", "latency_commands", "search_commands", "deliver_commands"):
    import_module(f"hwnas.search.cli.{_name}")


def main(argv: list[str] | None = None) -> int:
    """Console entry point: user errors become one line on stderr and exit status 2."""
    show_logs()
    if argv is None:  # a real command line: `hwnas train` may restart it (host memory)
        allow_restart(sys.orig_argv)
    command = typer.main.get_command(app)
    try:
        code = command.main(args=argv, prog_name="hwnas", standalone_mode=False)
    except NoArgsIsHelpError as e:
        sys.stdout.write(e.format_message() + "\n")
        return 0
    except UsageError as e:
        hint = f" (see `{e.ctx.command_path} --help`)" if e.ctx else ""
        fail(f"{e.format_message()}{hint}")
        return EXIT_USER_ERROR
    except typer.Abort:
        fail("aborted")
        return 130
    except ClickException as e:
        fail(e.format_message())
        return EXIT_USER_ERROR
    except Exception as e:
        if not is_user_error(e):
            raise
        fail(shown(e, flags=True))
        return EXIT_USER_ERROR
    return code if isinstance(code, int) else 0
