"""Exception types. The command line turns any SsmlError into one line and exit code 2."""


class SsmlError(Exception):
    """Base class for errors a user can act on; the message says what to do."""


class SpikeFormatError(SsmlError, ValueError):
    """A spike file or stream does not match the expected layout."""


class DriverError(SsmlError):
    """A spike source could not be opened or failed while running."""


class ModelError(SsmlError):
    """A model could not be loaded or does not fit the input."""


class ConfigError(SsmlError, ValueError):
    """An option or argument has an invalid value."""
