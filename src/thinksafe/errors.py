"""Errors the CLI reports as one line (no traceback): bad input, missing packages, bad config."""


class ThinksafeError(Exception):
    """Base class: the message is complete and user-facing."""


class InputError(ThinksafeError):
    """A file, field or value given by the user is wrong; the message names the file and line/field."""


class ConfigError(ThinksafeError):
    """A config file or flag is wrong."""


class MissingDependency(ThinksafeError):
    """An optional package is needed; the message names the pip extra that installs it."""
