"""The YOLOv5 v6+ training loss: CIoU box loss, BCE objectness (IoU targets) and BCE class loss over P3-P5."""

import torch
from torch import nn

from utils.boxes import bbox_iou

# neighbour cells a target is also assigned to: itself, left, up, right, down (in units of the offset g)
_NEIGHBOURS = ((0, 0), (1, 0), (0, 1), (-1, 0), (0, -1))
_OBJ_BALANCE = {3: [4.0, 1.0, 0.4]}  # objectness weight per output layer, P3-P5
_OBJ_BALANCE_DEFAULT = [4.0, 1.0, 0.25, 0.06, 0.02]  # P3-P7 models


def smooth_BCE(eps=0.1):
    """Label smoothing: (positive, negative) BCE targets, e.g. eps=0.1 -> (0.95, 0.05)."""
    return 1.0 - 0.5 * eps, 0.5 * eps


def _reduce(loss, reduction):
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


class FocalLoss(nn.Module):
    """Focal loss (Lin et al. 2017) around a BCEWithLogitsLoss: loss * alpha_t * (1 - p_t)^gamma."""

    def __init__(self, loss_fcn, gamma=1.5, alpha=0.25):
        super().__init__()
        self.loss_fcn = loss_fcn
        self.gamma, self.alpha = gamma, alpha
        self.reduction = loss_fcn.reduction
        self.loss_fcn.reduction = "none"  # the modulation needs the element-wise loss

    def forward(self, pred, true):
        loss = self.loss_fcn(pred, true)
        prob = pred.sigmoid()
        p_t = true * prob + (1 - true) * (1 - prob)
        alpha_t = true * self.alpha + (1 - true) * (1 - self.alpha)
        return _reduce(loss * (alpha_t * (1.0 - p_t) ** self.gamma), self.reduction)


class QFocalLoss(nn.Module):
    """Quality focal loss (Li et al. 2020, generalized focal loss): loss * alpha_t * |true - p|^gamma."""

    def __init__(self, loss_fcn, gamma=1.5, alpha=0.25):
        super().__init__()
        self.loss_fcn = loss_fcn
        self.gamma, self.alpha = gamma, alpha
        self.reduction = loss_fcn.reduction
        self.loss_fcn.reduction = "none"

    def forward(self, pred, true):
        loss = self.loss_fcn(pred, true)
        prob = pred.sigmoid()
        alpha_t = true * self.alpha + (1 - true) * (1 - self.alpha)
        return _reduce(loss * alpha_t * torch.abs(true - prob) ** self.gamma, self.reduction)


def _detect_head(model):
    """The Detect module (last layer) of a model, DataParallel/DDP wrappers removed."""
    core = model.module if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)) else model
    return core.model[-1]


class ComputeLoss:
    """YOLOv5's loss. `loss, items = ComputeLoss(model)(preds, targets)`.

    preds: the model's training output, one tensor per layer shaped (bs, na, ny, nx, 5 + nc).
    targets: (n, 6) rows of (image index in batch, class, x, y, w, h), box normalised to [0, 1].
    Returns (lbox*box + lobj*obj + lcls*cls) * bs, and the detached items [box, obj, cls].
    Hyperparameters come from `model.hyp` (box, obj, cls, cls_pw, obj_pw, anchor_t, fl_gamma, label_smoothing).
    """

    sort_obj_iou = False  # objectness targets written in IoU order (False keeps YOLOv5's default)

    def __init__(self, model, autobalance=False):
        device = next(model.parameters()).device
        hyp = model.hyp
        bce_cls = nn.BCEWithLogitsLoss(pos_weight=torch.tensor([hyp["cls_pw"]], device=device))
        bce_obj = nn.BCEWithLogitsLoss(pos_weight=torch.tensor([hyp["obj_pw"]], device=device))
        self.cp, self.cn = smooth_BCE(eps=hyp.get("label_smoothing", 0.0))
        gamma = hyp.get("fl_gamma", 0.0)
        if gamma > 0:
            bce_cls, bce_obj = FocalLoss(bce_cls, gamma), FocalLoss(bce_obj, gamma)
        head = _detect_head(model)
        self.balance = list(_OBJ_BALANCE.get(head.nl, _OBJ_BALANCE_DEFAULT))
        self.ssi = list(head.stride).index(16) if autobalance else 0  # stride-16 layer anchors the balance
        self.BCEcls, self.BCEobj = bce_cls, bce_obj
        self.gr = 1.0  # objectness target = gr * IoU + (1 - gr)
        self.hyp, self.autobalance = hyp, autobalance
        self.na, self.nc, self.nl = head.na, head.nc, head.nl
        self.anchors = head.anchors  # (nl, na, 2) in grid units of each layer
        self.device = device

    def __call__(self, p, targets):
        p = [pi.float() for pi in p]  # the loss is always fp32, whatever autocast produced
        lcls = torch.zeros(1, device=self.device)
        lbox = torch.zeros(1, device=self.device)
        lobj = torch.zeros(1, device=self.device)
        tcls, tbox, indices, anchors = self.build_targets(p, targets)

        for i, pi in enumerate(p):  # pi: (bs, na, ny, nx, 5 + nc)
            b, a, gj, gi = indices[i]
            tobj = torch.zeros(pi.shape[:4], dtype=pi.dtype, device=self.device)
            n = b.shape[0]
            if n:
                pxy, pwh, _, pcls = pi[b, a, gj, gi].split((2, 2, 1, self.nc), 1)
                pxy = pxy.sigmoid() * 2 - 0.5  # centre offset in (-0.5, 1.5) cells
                pwh = (pwh.sigmoid() * 2) ** 2 * anchors[i]  # size in (0, 4) anchors
                iou = bbox_iou(torch.cat((pxy, pwh), 1), tbox[i], CIoU=True).squeeze(-1)
                lbox += (1.0 - iou).mean()

                iou = iou.detach().clamp(0).type(tobj.dtype)
                if self.sort_obj_iou:
                    order = iou.argsort()
                    b, a, gj, gi, iou = b[order], a[order], gj[order], gi[order], iou[order]
                if self.gr < 1:
                    iou = (1.0 - self.gr) + self.gr * iou
                tobj[b, a, gj, gi] = iou

                if self.nc > 1:  # a single class has no class loss
                    t = torch.full_like(pcls, self.cn)
                    t[torch.arange(n, device=self.device), tcls[i]] = self.cp
                    lcls += self.BCEcls(pcls, t)

            obji = self.BCEobj(pi[..., 4], tobj)
            lobj += obji * self.balance[i]
            if self.autobalance:
                self.balance[i] = self.balance[i] * 0.9999 + 0.0001 / obji.detach().item()

        if self.autobalance:
            self.balance = [x / self.balance[self.ssi] for x in self.balance]
        lbox *= self.hyp["box"]
        lobj *= self.hyp["obj"]
        lcls *= self.hyp["cls"]
        bs = p[0].shape[0]
        return (lbox + lobj + lcls) * bs, torch.cat((lbox, lobj, lcls)).detach()

    def build_targets(self, p, targets):
        """Assign each target to anchors and grid cells of every layer.

        Returns per layer: class ids (n,), box targets (n, 4) as (x, y offset from the cell corner, w, h) in grid
        units, indices (image, anchor, grid y, grid x), and the matched anchor sizes (n, 2).

        Worked example (one layer of stride 8 on a 64x64 image, so an 8x8 grid, anchors (10,13), (16,30), (33,23)
        pixels = (1.25,1.625), (2,3.75), (4.125,2.875) grid units, anchor_t = 4, g = 0.5):
        target (image 0, class 2, x .30, y .60, w .25, h .25) becomes x 2.4, y 4.8, w 2, h 2 in grid units.
        Width/height ratios to the anchors: max(2/1.25, 1.25/2, 2/1.625, ...) = 1.6, 1.875, 2.0625, all < 4, so
        all three anchors match. x 2.4 has fraction .4 < .5 and x > 1: also the left neighbour (offset +0.5,
        cell x 1); y 4.8 has fraction .8, so 8 - 4.8 = 3.2 has fraction .2 < .5: also the cell below (y 5).
        Each anchor thus yields three rows: cells (gx, gy) = (2, 4), (1, 4), (2, 5), with box targets
        (.4, .8, 2, 2), (1.4, .8, 2, 2), (.4, -.2, 2, 2): the predicted offset 2*sigmoid - 0.5 spans (-0.5, 1.5).
        """
        na, nt = self.na, targets.shape[0]
        tcls, tbox, indices, anch = [], [], [], []
        gain = torch.ones(7, device=self.device)  # scales (image, class, x, y, w, h, anchor) to grid units
        anchor_ids = torch.arange(na, device=self.device).float().view(na, 1).repeat(1, nt)
        targets = torch.cat((targets.repeat(na, 1, 1), anchor_ids[..., None]), 2)  # (na, nt, 7)
        g = 0.5  # a target also goes to a neighbour when it lies within g of the shared edge
        offsets_all = torch.tensor(_NEIGHBOURS, device=self.device).float() * g  # (5, 2)

        for i in range(self.nl):
            anchors, shape = self.anchors[i], p[i].shape
            gain[2:6] = torch.tensor(shape, device=self.device)[[3, 2, 3, 2]].float()  # nx, ny, nx, ny
            t = targets * gain  # (na, nt, 7) in grid units
            if nt:
                ratio = t[..., 4:6] / anchors[:, None]  # (na, nt, 2)
                keep = torch.max(ratio, 1 / ratio).max(2)[0] < self.hyp["anchor_t"]
                t = t[keep]  # (n, 7)

                gxy = t[:, 2:4]  # from the left/top edge
                gxy_inv = gain[[2, 3]] - gxy  # from the right/bottom edge
                left, up = ((gxy % 1 < g) & (gxy > 1)).T
                right, down = ((gxy_inv % 1 < g) & (gxy_inv > 1)).T
                chosen = torch.stack((torch.ones_like(left), left, up, right, down))  # (5, n)
                t = t.repeat((5, 1, 1))[chosen]
                offsets = (torch.zeros_like(gxy)[None] + offsets_all[:, None])[chosen]
            else:
                t = targets[0]
                offsets = 0

            image_class, gxy, gwh, anchor_idx = t.chunk(4, 1)  # (n, 2), (n, 2), (n, 2), (n, 1)
            anchor_idx = anchor_idx.long().view(-1)
            image_idx, cls = image_class.long().T
            cell = (gxy - offsets).long()
            gi, gj = cell.T  # views: the in-place clamps below also clamp `cell`, so box targets follow the cell
            indices.append((image_idx, anchor_idx, gj.clamp_(0, shape[2] - 1), gi.clamp_(0, shape[3] - 1)))
            tbox.append(torch.cat((gxy - cell, gwh), 1))
            anch.append(anchors[anchor_idx])
            tcls.append(cls)
        return tcls, tbox, indices, anch
