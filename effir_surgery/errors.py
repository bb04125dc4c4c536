"""User-facing errors: one line that says what is wrong and what to change. The CLI maps them to exit code 2."""


class EffirError(ValueError):
    """Bad input (model, data, option or output path) detected before or instead of heavy work."""
