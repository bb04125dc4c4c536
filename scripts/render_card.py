"""Render the model card of a saved model folder to a file, with the renderer `effir-surgery push` uses.

    python scripts/render_card.py FOLDER [--repo-id OWNER/NAME] [--revision BRANCH] -o docs/example_model_card.md

Without -o the card goes to stdout. Nothing in FOLDER is changed and nothing is checked or uploaded (use
`effir-surgery push FOLDER --repo-id ID --dry-run` for the pre-flight check). --repo-id names the model and fills the
usage and verification snippets as they would read on the Hub; without it they use the folder path.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("folder", type=Path, help="a folder saved by effir-surgery prune, finetune or run")
    parser.add_argument("--repo-id", default=None, help="the Hub repo the card is for (owner/name)")
    parser.add_argument("--revision", default=None, help="the branch of --repo-id (default main)")
    parser.add_argument("-o", "--output", type=Path, default=None, help="write the card here (default: stdout)")
    args = parser.parse_args(argv)

    from effir_surgery.card import render_model_card
    from effir_surgery.validation import check_repo_id

    if not (args.folder / "config.json").is_file():
        parser.error(f"'{args.folder}' has no config.json; pass a folder saved by effir-surgery")
    try:
        check_repo_id(args.repo_id)
    except ValueError as exc:
        parser.error(f"--repo-id: {exc}")
    if args.revision and not args.repo_id:
        parser.error("--revision needs --repo-id")
    card = render_model_card(args.folder, args.repo_id, revision=args.revision)
    if args.output is None:
        sys.stdout.write(card)
    else:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(card)
        print(f"wrote {args.output} ({len(card.splitlines())} lines)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
