"""The exceptions that report a problem with the user's files, flags or network; each message names what to fix.

They live apart from the code that raises them so that the command-line runner (utils/cli.py) can catch them all
without importing the training, checkpoint or download modules.
"""


class CheckpointError(RuntimeError):
    """A checkpoint that is unreadable, refused by the safe loader, or holds no model."""


class DownloadError(ConnectionError):
    """A URL could not be fetched (no network, unknown host, HTTP error, or an archive that will not unpack)."""


class MissingPackageError(ImportError):
    """An optional package that the requested feature needs is not installed."""


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite: training stops, the previous epoch's checkpoint is kept."""


class ResumeError(RuntimeError):
    """--resume cannot continue: the checkpoint is missing or its run already finished."""


# ValueError covers bad flags, hyp files, dataset and model YAMLs (DatasetError, ModelConfigError)
USER_ERRORS = (CheckpointError, DownloadError, FileNotFoundError, MissingPackageError, NonFiniteLossError, ResumeError,
               ValueError)
