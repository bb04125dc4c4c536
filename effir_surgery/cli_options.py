"""What the ``effir-surgery`` commands share: flags whose --help shows the config's default, the model-loading and
calibration flags, and the one-line exit for bad input (``EffirError`` -> message on stderr, exit code 2).
"""

from __future__ import annotations

import functools
import signal
import sys

import click

from ._logging import verbosity
from .config import CalibSettings, LoadSettings
from .errors import EffirError


def drop_none(values: dict) -> dict:
    return {k: v for k, v in values.items() if v is not None}


class ConfigOption(click.Option):
    """A flag for the config field of the same name (``--calib-samples`` <-> ``calib_samples``). Its value is None
    unless given, so the config fills in its own default (and records the field as unset); --help shows that
    default as click's ``show_default`` would, read from the config, so it is written in one place."""

    def __init__(self, *args, config: type, **kwargs):
        super().__init__(*args, default=None, **kwargs)
        self.config_default = config.model_fields[self.name].default

    def get_help_extra(self, ctx: click.Context):
        extra = super().get_help_extra(ctx)
        value = self.config_default
        if isinstance(value, bool) and self.secondary_opts:  # --x/--no-x: the flag that is on by default
            extra["default"] = (self.opts if value else self.secondary_opts)[0].lstrip("-")
        elif isinstance(value, str) and (value != value.strip() or not value):  # a prompt: show its spaces
            extra["default"] = repr(value)
        elif value is not None:
            extra["default"] = str(value)
        return extra


def config_option(config: type, *param_decls: str, **attrs):
    """``click.option`` for a field of ``config`` with a default (``ConfigOption``)."""
    return click.option(*param_decls, cls=ConfigOption, config=config, **attrs)


def config_defaults(config: type):
    """Fill ``{field}`` placeholders of a command's docstring with the defaults of ``config``'s fields."""

    def decorator(f):
        f.__doc__ = f.__doc__.format(**{name: field.default for name, field in config.model_fields.items()})
        return f

    return decorator


TRUST_HELP = (
    "Allow code from the model folder or repo that is not effir-surgery's own remote code (another auto_map, "
    "a custom tokenizer or sentence-transformers module, extra .py files) to run. Review it first; without the "
    "flag such a model is refused before anything from it runs."
)


def load_options(f):
    f = click.option("--trust-remote-code", is_flag=True, default=None, help=TRUST_HELP)(f)
    f = config_option(LoadSettings, "--device", help="cpu, cuda, cuda:1 ...")(f)
    f = config_option(
        LoadSettings,
        "--dtype",
        type=click.Choice(["float32", "bfloat16", "float16"]),
        help="Weights dtype while working.",
    )(f)
    f = click.option("--revision", default=None, help="Hub revision (branch, tag or commit) of MODEL.")(f)
    return f


def calib_options(f):
    f = config_option(CalibSettings, "--calib-batch-size", type=int, help="Calibration batch size.")(f)
    f = config_option(CalibSettings, "--calib-max-length", type=int, help="Tokens per calibration text.")(f)
    f = config_option(CalibSettings, "--calib-samples", type=int, help="Number of calibration texts.")(f)
    f = click.option(
        "--calib", default=None, help="Calibration texts: a BEIR folder or a jsonl file (default: bundled texts)."
    )(f)
    return f


class Stopped(KeyboardInterrupt):
    """A stop signal (SIGTERM) turned into the exception Ctrl-C raises, so that every ``finally`` runs the same
    cleanup; ``signum`` says which signal, for the exit code."""

    def __init__(self, signum: int):
        super().__init__(f"signal {signum}")
        self.signum = signum


def handle_errors(f):
    """Print ``EffirError`` as one line and exit with code 2. A command stopped by Ctrl-C or SIGTERM exits, once its
    cleanup has run, with the shell's code for that signal (128 + signal number: 130, 143) and one line."""

    @functools.wraps(f)
    def wrapper(*args, quiet: bool = False, verbose: bool = False, **kwargs):
        try:
            if quiet and verbose:
                raise EffirError("--quiet and --verbose contradict each other; give one.")
            with verbosity(quiet, verbose):
                return f(*args, **kwargs)
        except EffirError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(2)
        except KeyboardInterrupt as exc:
            signum = getattr(exc, "signum", signal.SIGINT)
            click.echo(f"Stopped by {signal.Signals(signum).name}.", err=True)
            sys.exit(128 + signum)

    # every command takes these; they set the level of the effir_surgery logger (see _logging.verbosity)
    wrapper = click.option("--verbose", "-v", is_flag=True, help="Also debug lines and the libraries' info logs.")(
        wrapper
    )
    return click.option(
        "--quiet", "-q", is_flag=True, help="Only warnings, errors and the results (stdout); no progress bars."
    )(wrapper)


# --push-to-hub on the commands that save a folder (prune, finetune)
push_option = click.option(
    "--push-to-hub",
    default=None,
    metavar="REPO_ID",
    help="After saving, publish the folder to this Hub repo (owner/name), as `effir-surgery push` does.",
)
