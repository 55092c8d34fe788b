"""Running a command-line entry point: problems with the user's input end in one clear error line, not a traceback."""

import sys

from utils.log import LOGGER, colorstr


def user_errors():
    """The exceptions that report a problem with the user's files, flags or network (each names what to fix)."""
    from utils.checkpoint import CheckpointError
    from utils.downloads import DownloadError
    from utils.optional import MissingPackageError
    from utils.train_loop import NonFiniteLossError
    from utils.train_options import ResumeError

    # ValueError covers bad flags, hyp files, dataset and model YAMLs (DatasetError, ModelConfigError)
    return (CheckpointError, DownloadError, FileNotFoundError, MissingPackageError, NonFiniteLossError, ResumeError,
            ValueError)


def run_cli(main, *args):
    """main(*args); a user error prints 'Error: ...' and exits with status 1."""
    try:
        return main(*args)
    except user_errors() as e:
        LOGGER.error(f"{colorstr('red', 'bold', 'Error:')} {e}")
        sys.exit(1)
