"""Optional packages (onnx, onnxruntime, openvino, onnxsim): imported when a feature needs them, with one clear
message naming the pip command when one is missing."""

import importlib

from utils.errors import MissingPackageError


def import_optional(module, pip_name, feature):
    """The module `module`, or MissingPackageError saying that `feature` needs `pip install pip_name`."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingPackageError(f"{feature} needs the optional package {pip_name} ({e}): pip install {pip_name} "
                                  "(or pip install -r requirements-optional.txt)") from None
