"""torchvision's compiled NMS without importing the torchvision package.

`import torchvision` imports its model zoo, which imports torch._dynamo: about 2 s (4 s on a loaded machine) of
every val.py, detect.py and train.py start, for one operator. Loading torchvision's operator library registers
torch.ops.torchvision.nms, the kernel torchvision.ops.nms itself calls, in a few milliseconds.
"""

import functools
import importlib.machinery
import importlib.util
import sys

import torch

OPS_LIBRARIES = ("_C_stable", "_C")  # torchvision's operator library: _C_stable from 0.25 on, _C before


@functools.cache
def _ops_loaded():
    """Load torchvision's operator library once; True when torch.ops.torchvision.nms is registered."""
    if "torchvision" in sys.modules or _load_ops_library():
        return True
    import torchvision  # an unusual install (e.g. built from source): let the package load its ops itself

    return torchvision.extension._has_ops()


def _load_ops_library():
    """Load the first of OPS_LIBRARIES found in torchvision's folder; False when none loads."""
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("torchvision is not installed: pip install -r requirements.txt")
    finder = importlib.machinery.FileFinder(
        spec.submodule_search_locations[0],
        (importlib.machinery.ExtensionFileLoader, importlib.machinery.EXTENSION_SUFFIXES))
    for name in OPS_LIBRARIES:
        library = finder.find_spec(name)
        if library is not None:
            try:
                torch.ops.load_library(library.origin)
                return True
            except OSError:
                continue
    return False


def nms(boxes, scores, iou_threshold):
    """torchvision.ops.nms: indices of the boxes (n, 4) xyxy kept, by decreasing score."""
    if not _ops_loaded():
        raise RuntimeError("torchvision's compiled operators could not be loaded: torch and torchvision versions "
                           "must match (pip install -r requirements.txt)")
    return torch.ops.torchvision.nms(boxes, scores, iou_threshold)
