"""The Hugging Face Hub commands: ``effir-surgery push`` (publish a saved folder) and ``effir-surgery verify`` (check
a folder's or a repo's remote code). Each turns its flags into a config and calls one ``hub`` function.
"""

from __future__ import annotations

import click

from .cli_options import config_option, drop_none, handle_errors
from .config import PushConfig, VerifyConfig
from .validation import validated


@click.command()
@click.argument("folder", metavar="MODEL_DIR", type=click.Path())
@click.option("--repo-id", required=True, help="Hub model repo to publish to, owner/name (created if missing).")
@click.option(
    "--private", is_flag=True, default=None, help="Create the repo as private (an existing repo keeps its visibility)."
)
@click.option("--revision", default=None, help="Branch to upload to (created if missing; default main).")
@click.option(
    "--commit-message", default=None, help="Commit message (default: 'Upload NAME with effir-surgery VERSION')."
)
@click.option(
    "--dry-run", is_flag=True, default=None, help="Check the folder, print its files and model card; upload nothing."
)
@config_option(
    PushConfig,
    "--reload-check/--no-reload-check",
    help="Reload the folder in a clean process before uploading (skipped anyway, with a note, when the model would "
    "not fit in memory twice).",
)
@handle_errors
def push(folder, **flags):
    """Publish MODEL_DIR, a folder saved by prune or finetune, on the Hugging Face Hub with a generated model card.

    A pre-flight check runs first (files, weights against the config, remote code and auto_map, tokenizer,
    sentence-transformers files, plan, clean-process reload); a folder that fails is refused with the list of
    problems. The token comes from HF_TOKEN or `hf auth login`. README.md in MODEL_DIR is regenerated.
    """
    from .hub import push as run_push

    config = validated(PushConfig, folder=folder, **drop_none(flags))
    result = run_push(config)
    click.echo(result.summary())
    if config.dry_run:
        click.echo("\n--- README.md (model card) ---\n" + result.card)


@click.command()
@click.argument("model", metavar="MODEL_DIR_OR_REPO")
@click.option("--revision", default=None, help="Branch, tag or commit of a Hub repo id (default main).")
@handle_errors
def verify(model, **flags):
    """Check that the remote code (configuration_effir.py, modeling_effir.py) of a saved folder or a Hub repo is
    exactly the code this effir-surgery version ships, that auto_map points at it, and that nothing else would run
    code (no other auto_map entry, tokenizer auto_map, custom sentence-transformers module or .py file). Exits with
    code 2 naming what differs. For a repo id only config.json, tokenizer_config.json, modules.json and the .py
    files are downloaded.
    """
    from .hub import verify as run_verify

    config = validated(VerifyConfig, model=model, **drop_none(flags))
    click.echo(run_verify(config).summary())
