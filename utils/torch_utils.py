"""Familiar YOLOv5 import paths (`from utils.torch_utils import ...`), re-exported from the focused modules."""

from utils.device import select_device, smart_inference_mode  # noqa: F401
from utils.distributed import torch_distributed_zero_first  # noqa: F401
from utils.ema import ModelEMA, copy_attr, de_parallel  # noqa: F401
from utils.optim import smart_optimizer  # noqa: F401
from utils.precision import Precision, select_precision  # noqa: F401
from utils.profiling import profile, time_sync  # noqa: F401
from utils.train.checkpoints import restore_training_state as smart_resume  # noqa: F401
from utils.train.loop import EarlyStopping  # noqa: F401
from utils.train.setup import init_seeds  # noqa: F401
