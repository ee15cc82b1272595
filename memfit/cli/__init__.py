"""`memfit` console script: fine-tune LLaMA-family models when GPU memory is the limit.

A thin dispatcher. `memfit --help` and `--version` import nothing heavy (no torch); a command's module is imported
only when that command runs. Errors the user can fix are one line, `memfit: <what> (<file>): <fix>`, exit 2
(memfit/cli/errors.py decides which); `-v` shows third-party warnings and the traceback too."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import textwrap
import traceback

# name -> (module under memfit.cli, how it runs, one-line summary). "argv": module.FUNCTION(argv) parses its own
# flags; "sub": module.FUNCTION(subparsers) adds its parser(s), whose `func` runs it.
COMMANDS: dict[str, tuple[str, str, str, str]] = {
    "train": ("train", "argv", "cmd_train", "fine-tune from a recipe: `memfit train smollm2-cpu [--key value ...]`"),
    "generate": ("generate", "argv", "generate_main", "answer a prompt with a trained run: "
                                                       "`memfit generate RUN_DIR \"prompt\" [--chat]`"),
    "eval": ("evaluate", "sub", "add_eval_parser", "perplexity of a run on its recorded test documents"),
    "merge": ("merge", "sub", "add_merge_parser", "fold a run's adapter into its base: `memfit merge RUN --out DIR`"),
    "plan": ("plan", "sub", "add_commands", "one stack: its exact max micro-batch and accumulation on this device"),
    "bench": ("plan", "sub", "add_commands", "several stacks side by side (table, Markdown, PNG)"),
    "estimate": ("plan", "sub", "add_commands", "the analytic memory breakdown, no weights loaded"),
    "stacks": ("plan", "sub", "add_commands", "the memory strategies, one strategy's arguments, a spec resolved"),
    "data": ("data", "argv", "data_main", "`memfit data inspect DIR`: extraction artefacts and split statistics; "
                                          "`memfit data fetch climate DIR`: download the full corpus, verified"),
}
DESCRIPTION = ("Fine-tune LLaMA-family models when GPU memory is the limit: composable memory strategies, an exact "
               "capacity planner and an accelerate training loop. Errors you can fix are one line saying how; "
               "-v adds third-party warnings and tracebacks.")


def _version() -> str:
    from .. import __version__  # memfit/__init__.py is light: its heavy names load on first use

    return __version__


def top_parser() -> argparse.ArgumentParser:
    width = max(map(len, COMMANDS))
    listing = "\n".join(textwrap.fill(summary, 100, initial_indent=f"  {name:<{width}}  ",
                                       subsequent_indent=" " * (width + 4)) for name, (*_, summary) in COMMANDS.items())
    p = argparse.ArgumentParser(prog="memfit", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=f"commands (`memfit COMMAND --help` for each):\n{listing}")
    p.add_argument("--version", action="version", version=f"memfit {_version()}")
    p.add_argument("-v", "--verbose", action="store_true", help="show third-party warnings and full tracebacks")
    p.add_argument("command", choices=list(COMMANDS), metavar="COMMAND", help="listed below")
    p.add_argument("args", nargs=argparse.REMAINDER, help="the command's own arguments and flags")
    return p


class FlagError(ValueError):
    """A bad flag of a command: one line naming it (main's boundary prints it), not argparse's usage block."""


class _CommandParser(argparse.ArgumentParser):
    def error(self, message: str):
        raise FlagError(f"{message} (`{self.prog} --help` lists the flags)")


def run_command(name: str, argv: list[str]) -> int:
    module_name, style, function, _ = COMMANDS[name]
    module = importlib.import_module(f".{module_name}", __name__)
    if style == "argv":
        return getattr(module, function)(argv)
    parser = _CommandParser(prog="memfit")
    getattr(module, function)(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args([name, *argv])
    return args.func(args)


def _wants_help(command: str, argv: list[str]) -> bool:
    """--help anywhere, or `memfit data` alone (it prints its help): nothing heavy is imported then."""
    return any(a in ("-h", "--help") for a in argv) or (command == "data" and not argv)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = top_parser().parse_args(argv)  # exits on --help, --version and an unknown command
    verbose = args.verbose
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from ..quiet import quiet_third_party

    try:
        with quiet_third_party(verbose=verbose):
            if not _wants_help(args.command, args.args):
                from ..runtime import configure_runtime  # imports torch: not for --help

                configure_runtime()  # before anything initialises CUDA (the allocator setting is read then)
            return run_command(args.command, args.args)
    except KeyboardInterrupt as exc:  # Ctrl-C; a subclass may carry how to resume
        if verbose:
            traceback.print_exc()
        print(f"memfit: {str(exc) or 'interrupted'}", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - sorted into the user's (one line) and bugs (traceback) below
        from .errors import exit_code, user_message

        message = user_message(exc)
        if message is None:  # a bug in memfit or below it: never hidden behind one line
            raise
        if verbose:
            traceback.print_exc()
        print(f"memfit: {message}", file=sys.stderr)
        return exit_code(exc)


if __name__ == "__main__":
    sys.exit(main())
