"""Running a command-line entry point: problems with the user's input end in one clear error line, not a traceback."""

import sys

from utils.errors import USER_ERRORS
from utils.log import LOGGER, colorstr


def run_cli(main, *args):
    """main(*args); a user error (utils.errors.USER_ERRORS) prints 'Error: ...' and exits with status 1."""
    try:
        return main(*args)
    except USER_ERRORS as e:
        LOGGER.error(f"{colorstr('red', 'bold', 'Error:')} {e}")
        sys.exit(1)
