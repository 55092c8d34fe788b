"""Command lines: flags in either spelling (--save-period, --save_period), and user errors as one clear line."""

import argparse
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


def _hyphenated(flag):
    return "--" + flag[2:].replace("_", "-")


class ArgumentParser(argparse.ArgumentParser):
    """argparse.ArgumentParser that takes every long flag with '-' or '_' between its words.

    YOLOv5 has spelled flags both ways across its versions and scripts (--save_period in 5.x, --save-period today;
    --evolve_population today), so users' scripts use both. --help lists each flag as defined.
    """

    def __init__(self, *args, **kwargs):
        self.defined_flags = {}  # hyphenated spelling -> the flag as defined (set first: __init__ adds --help)
        super().__init__(*args, **kwargs)

    def add_argument(self, *args, **kwargs):
        action = super().add_argument(*args, **kwargs)
        for flag in action.option_strings:
            if flag.startswith("--"):
                self.defined_flags.setdefault(_hyphenated(flag), flag)
        return action

    def parse_known_args(self, args=None, namespace=None):
        args = sys.argv[1:] if args is None else list(args)
        end = args.index("--") if "--" in args else len(args)  # after a bare '--' every word is positional
        return super().parse_known_args([self._as_defined(a) for a in args[:end]] + args[end:], namespace)

    def _as_defined(self, word):
        """'--save_period=3' -> '--save-period=3' when only the latter is defined; other words unchanged."""
        flag, equals, value = word.partition("=")
        if not flag.startswith("--") or flag in self.defined_flags.values():
            return word
        return self.defined_flags.get(_hyphenated(flag), flag) + equals + value
