"""The project logger, YOLOv5-style coloured prefixes and the progress-bar format."""

import logging
import os
import sys

LOGGING_NAME = "yolov5"
TQDM_BAR_FORMAT = "{l_bar}{bar:10}{r_bar}"  # YOLOv5's progress bars: a 10-character bar

_COLOURS = {
    "black": "\033[30m", "red": "\033[31m", "green": "\033[32m", "yellow": "\033[33m",
    "blue": "\033[34m", "magenta": "\033[35m", "cyan": "\033[36m", "white": "\033[37m",
    "bright_black": "\033[90m", "bright_red": "\033[91m", "bright_green": "\033[92m",
    "bright_yellow": "\033[93m", "bright_blue": "\033[94m", "bright_magenta": "\033[95m",
    "bright_cyan": "\033[96m", "bright_white": "\033[97m",
    "end": "\033[0m", "bold": "\033[1m", "underline": "\033[4m",
}


def colorstr(*args):
    """colorstr('blue', 'bold', 'text') wraps 'text' in ANSI codes; a single argument defaults to blue bold."""
    *styles, text = args if len(args) > 1 else ("blue", "bold", args[0])
    return "".join(_COLOURS[s] for s in styles) + f"{text}" + _COLOURS["end"]


def _make_logger(name=LOGGING_NAME):
    """One stream handler on stdout at INFO (WARNING for DDP ranks other than 0); no propagation to root."""
    rank = int(os.getenv("RANK", -1))
    logger = logging.getLogger(name)
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO if rank in (-1, 0) else logging.WARNING)
    logger.propagate = False
    return logger


LOGGER = _make_logger()
