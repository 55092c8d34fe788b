"""The main process's work after each training epoch: validation when due, fitness and early stopping, the results row
(results.csv, TensorBoard, on_fit_epoch_end) and last.pt / best.pt / epochN.pt."""

import numpy as np

from utils.metrics import fitness
from utils.results import ResultsWriter
from utils.train.checkpoints import make_checkpoint, save_run_checkpoints
from utils.train.loop import EarlyStopping

EMA_ATTRIBUTES = ["yaml", "nc", "hyp", "names", "stride", "class_weights"]


class EpochEnd:
    """Called after each epoch in the main process; returns whether early stopping ends the training.

    validate: f(model=...) -> (results, per-class mAPs, times), val.run on the run's validation data;
    model, ema, optimizer: what the checkpoints hold; weights_dir: where they go; epochs: the run's total;
    start_epoch and best_fitness: where a resumed run stands. Under --noval only the final epoch and the 1-based
    epochs in opt.val_epochs are validated, the others log the latest results. results and maps hold the latest
    validation (zeros before the first).
    """

    def __init__(self, opt, validate, model, ema, optimizer, weights_dir, epochs, start_epoch=0, best_fitness=0.0,
                 on_fit_epoch_end=None):
        self.opt, self.validate, self.on_fit_epoch_end = opt, validate, on_fit_epoch_end
        self.model, self.ema, self.optimizer = model, ema, optimizer
        self.epochs, self.best_fitness = epochs, best_fitness
        self.val_epochs = set(getattr(opt, "val_epochs", None) or ())
        self.stopper = EarlyStopping(patience=opt.patience)
        self.results, self.maps = (0.0,) * 7, np.zeros(model.nc)
        self.weights_dir = weights_dir
        self.writer = ResultsWriter(opt.save_dir, tensorboard=not opt.evolve)
        self.writer.truncate(start_epoch - 1)  # on resume, rows written after the checkpoint would repeat epochs

    def __call__(self, epoch, mean_loss, lrs):
        opt = self.opt
        final_epoch = epoch + 1 == self.epochs or self.stopper.possible_stop
        self.ema.update_attr(self.model, include=EMA_ATTRIBUTES)
        if not opt.noval or final_epoch or epoch + 1 in self.val_epochs:
            self.results, self.maps, _ = self.validate(model=self.ema.ema)
        epoch_fitness = float(fitness(np.array(self.results).reshape(1, -1))[0])
        stop = self.stopper(epoch=epoch, fitness=epoch_fitness)
        is_best, self.best_fitness = epoch_fitness >= self.best_fitness, max(self.best_fitness, epoch_fitness)
        row = list(mean_loss) + list(self.results) + lrs
        self.writer.log(epoch, row)
        if self.on_fit_epoch_end is not None:
            self.on_fit_epoch_end(epoch, row)
        if not opt.nosave or (final_epoch and not opt.evolve):
            ckpt = make_checkpoint(epoch, self.best_fitness, self.model, self.ema, self.optimizer, opt)
            save_run_checkpoints(ckpt, self.weights_dir, is_best, epoch, opt.save_period)
        return stop

    def close(self):
        self.writer.close()
