"""Written for calibration from the notebook's docstrings only: the obvious implementation of the
short unet units (issue 29's "independently written 6-line unet_wce")."""

import torch
import torch.nn.functional as F

IGNORE_INDEX = 255


def weighted_cross_entropy(logits, target, weight, ignore_index=IGNORE_INDEX):
    logp = F.log_softmax(logits, dim=1)
    mask = target != ignore_index
    t = torch.where(mask, target, torch.zeros_like(target))
    lp = logp.gather(1, t.unsqueeze(1)).squeeze(1)
    w = weight[t] * mask
    return -(w * lp).sum() / w.sum()


def confusion_matrix(pred, target, n_class, ignore_index=IGNORE_INDEX):
    pred = pred.flatten()
    target = target.flatten()
    keep = (target != ignore_index) & (target >= 0) & (target < n_class)
    idx = n_class * target[keep].long() + pred[keep].long()
    conf = torch.bincount(idx, minlength=n_class**2)
    return conf.reshape(n_class, n_class)


def iou_per_class(conf):
    conf = conf.float()
    tp = torch.diag(conf)
    return tp / (conf.sum(0) + conf.sum(1) - tp)


def mean_iou(conf):
    iou = iou_per_class(conf)
    return iou[~torch.isnan(iou)].mean().item()


def class_weights(masks, n_class, ignore_index=IGNORE_INDEX):
    m = masks.flatten()
    m = m[(m != ignore_index) & (m >= 0) & (m < n_class)]
    counts = torch.bincount(m, minlength=n_class).float()
    weight = torch.zeros(n_class)
    weight[counts > 0] = m.numel() / counts[counts > 0]
    return weight
