"""Box coding: a box as four numbers *relative to* a proposal, the targets of box regression.

Paper: R-CNN (Girshick et al., CVPR 2014), Appendix C "Bounding-box regression"; the same
parametrisation is Faster R-CNN's Eq. 2 (Ren et al., NeurIPS 2015), with anchors as proposals.

A proposal P and its ground-truth box G, each as centre (x, y), width w and height h:

    encode (the regression targets, R-CNN Eq. 6-9, Faster R-CNN Eq. 2):
        t_x = (G_x - P_x) / P_w        t_w = log(G_w / P_w)
        t_y = (G_y - P_y) / P_h        t_h = log(G_h / P_h)

    decode (apply predicted deltas d to P; the prediction "G hat", R-CNN Eq. 1-4):
        pred_x = P_w d_x + P_x         pred_w = P_w exp(d_w)
        pred_y = P_h d_y + P_y         pred_h = P_h exp(d_h)

Centre offsets are measured in proposal widths and heights, and sizes as log-ratios, so the
targets do not depend on the proposal's scale: a box 10 % wider than its proposal has
t_w = log(1.1) whether the proposal is 20 or 200 pixels wide (Faster R-CNN sec. 3.1.2, Eq. 2).

Shape shorthand: R proposals (or anchors), K classes. Boxes are ``(x1, y1, x2, y2)``, float,
absolute pixels; deltas are ``(t_x, t_y, t_w, t_h)``; class-specific deltas are K such groups side
by side, ``[R, K*4]``, as Fast R-CNN's box head predicts them (sec. 2.2).
Naming: ``p_*`` proposal, ``g_*`` ground truth, ``t_*`` targets, ``d_*`` deltas to apply,
``pred_*`` decoded boxes.

Changes from the papers, all as in torchvision and Detectron:
  * Continuous coordinates: ``P_w = x2 - x1`` and ``P_x = x1 + P_w / 2``, where the R-CNN code
    used inclusive integer pixels (``P_w = x2 - x1 + 1``).
  * ``weights`` multiply the targets (and divide the deltas). Fast R-CNN (sec. 2.3) normalises
    the regression targets "to have zero mean and unit variance"; py-faster-rcnn fixed that
    normalisation to mean 0 and standard deviations sigma = (0.1, 0.1, 0.2, 0.2), and Detectron
    folded it into ``weights = 1 / sigma = (10, 10, 5, 5)``, which torchvision's box head uses. The
    RPN uses ``weights = (1, 1, 1, 1)``, the unnormalised targets of Faster R-CNN Eq. 2.
  * ``bbox_xform_clip``: before ``exp``, d_w and d_h are clamped at log(1000 / 16) = 4.135, so a
    box grows at most 62.5x its proposal (Detectron's heuristic: a 16-pixel anchor may grow to
    1000 pixels, no more). Without it an untrained network's exp(d_w) overflows to inf.

``BoxCoder.encode`` / ``BoxCoder.decode`` compute exactly what torchvision's
``BoxCoder.encode_single`` / ``BoxCoder.decode_single`` compute (``torchvision.models.detection.
_utils``), bit for bit; the tests compare them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


def _centre_size(boxes: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(x1, y1, x2, y2)`` boxes [R, 4] -> centre x, centre y, width, height, each [R]."""
    x1, y1, x2, y2 = boxes.unbind(dim=1)  # 4 x (R,)
    w = x2 - x1
    h = y2 - y1
    x = x1 + 0.5 * w  # the centre, in this order of operations (torchvision's, bit for bit)
    y = y1 + 0.5 * h
    return x, y, w, h


@dataclass(frozen=True)
class BoxCoder:
    """Encodes ground-truth boxes as deltas relative to proposals, and decodes deltas back to boxes.

    Args:
        weights: ``(w_x, w_y, w_w, w_h)``, multipliers of ``(t_x, t_y, t_w, t_h)``. Use
            ``(1., 1., 1., 1.)`` for the RPN (Faster R-CNN Eq. 2 as written) and
            ``(10., 10., 5., 5.)`` for the Fast R-CNN box head (= 1 / sigma, the target
            normalisation of Fast R-CNN sec. 2.3, see the module docstring).
        bbox_xform_clip: the largest d_w, d_h that ``decode`` exponentiates; log(1000 / 16).

    Example, with weights (1, 1, 1, 1): the proposal P = (0, 0, 10, 10) has centre (5, 5) and size
    10 x 10; the ground truth G = (2, 0, 12, 20) has centre (7, 10) and size 10 x 20. Then
    t = ((7 - 5) / 10, (10 - 5) / 10, log(10 / 10), log(20 / 10)) = (0.2, 0.5, 0, 0.693), and
    ``decode(t, P)`` gives G back.
    """

    weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    bbox_xform_clip: float = math.log(1000.0 / 16)

    def encode(self, gt_boxes: Tensor, proposals: Tensor) -> Tensor:
        """Regression targets that move each proposal onto its ground-truth box.

        Args:
            gt_boxes (Tensor[R, 4]): ``(x1, y1, x2, y2)``, the ground-truth box matched to each
                proposal (torchvision calls it ``reference_boxes``).
            proposals (Tensor[R, 4]): ``(x1, y1, x2, y2)``, the proposals or anchors P.

        Returns:
            Tensor[R, 4]: ``(t_x, t_y, t_w, t_h)`` times ``weights``, in ``gt_boxes``' dtype. A
            proposal of zero width or height gives inf or nan: filter those out first.
        """
        weights = torch.as_tensor(self.weights, dtype=gt_boxes.dtype, device=gt_boxes.device)
        w_x, w_y, w_w, w_h = weights  # 4 scalars, in the boxes' dtype as torchvision has them
        p_x, p_y, p_w, p_h = _centre_size(proposals)  # 4 x (R,)
        g_x, g_y, g_w, g_h = _centre_size(gt_boxes)  # 4 x (R,)

        t_x = w_x * (g_x - p_x) / p_w  # R-CNN Eq. 6, Faster R-CNN Eq. 2
        t_y = w_y * (g_y - p_y) / p_h  # R-CNN Eq. 7
        t_w = w_w * torch.log(g_w / p_w)  # R-CNN Eq. 8
        t_h = w_h * torch.log(g_h / p_h)  # R-CNN Eq. 9
        return torch.stack((t_x, t_y, t_w, t_h), dim=1)  # (R, 4)

    def decode(self, deltas: Tensor, proposals: Tensor) -> Tensor:
        """Apply predicted deltas to proposals: the boxes the network predicts.

        Args:
            deltas (Tensor[R, 4] or Tensor[R, K*4]): ``(d_x, d_y, d_w, d_h)`` times ``weights``,
                one group of 4 per proposal, or one per class (class-specific regression,
                Fast R-CNN sec. 2.2); torchvision calls them ``rel_codes``.
            proposals (Tensor[R, 4]): ``(x1, y1, x2, y2)``, the proposals or anchors P.

        Returns:
            Tensor[R, 4] or Tensor[R, K*4] (the shape of ``deltas``): ``(x1, y1, x2, y2)`` boxes, in
            ``deltas``' dtype; for K classes, the box for class k is columns ``4k .. 4k + 3``.
        """
        proposals = proposals.to(deltas.dtype)
        p_x, p_y, p_w, p_h = _centre_size(proposals)  # 4 x (R,)
        p_x, p_y, p_w, p_h = p_x[:, None], p_y[:, None], p_w[:, None], p_h[:, None]  # 4 x (R, 1)

        w_x, w_y, w_w, w_h = self.weights
        d_x = deltas[:, 0::4] / w_x  # (R, K): every 4th column, from column 0
        d_y = deltas[:, 1::4] / w_y  # (R, K)
        d_w = deltas[:, 2::4] / w_w  # (R, K)
        d_h = deltas[:, 3::4] / w_h  # (R, K)
        d_w = torch.clamp(d_w, max=self.bbox_xform_clip)  # exp(4.135) = 62.5, no overflow
        d_h = torch.clamp(d_h, max=self.bbox_xform_clip)

        pred_x = d_x * p_w + p_x  # (R, K), R-CNN Eq. 1
        pred_y = d_y * p_h + p_y  # (R, K), R-CNN Eq. 2
        pred_w = torch.exp(d_w) * p_w  # (R, K), R-CNN Eq. 3
        pred_h = torch.exp(d_h) * p_h  # (R, K), R-CNN Eq. 4

        # Back to corners: centre -/+ half the size.
        pred_x1 = pred_x - 0.5 * pred_w  # (R, K)
        pred_y1 = pred_y - 0.5 * pred_h
        pred_x2 = pred_x + 0.5 * pred_w
        pred_y2 = pred_y + 0.5 * pred_h
        pred_boxes = torch.stack((pred_x1, pred_y1, pred_x2, pred_y2), dim=2)  # (R, K, 4)
        return pred_boxes.flatten(1)  # (R, K, 4) -> (R, K*4), the layout of deltas
