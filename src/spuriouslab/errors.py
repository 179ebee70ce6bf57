"""The one exception type that the CLI turns into a one-line message and exit code 2."""


class ConfigError(ValueError):
    """Bad user input: an unknown key, a value out of range, or an impossible combination."""
