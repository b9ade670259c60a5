"""The lecture deck's architecture diagrams, drawn from the code: each box labelled with the shape
of the tensor that its module produced in one real forward pass of our model.

    name            function              file (.png)            paper, figure
    rcnn_diagram    fig_rcnn_diagram      16_rcnn_diagram        R-CNN sec. 2, Fig. 1 (the process)
    fast_diagram    fig_fast_diagram      17_fast_rcnn_diagram   Fast R-CNN sec. 2, Fig. 1
    faster_diagram  fig_faster_diagram    18_faster_rcnn_diagram Faster R-CNN sec. 3, Fig. 2-3 (RPN)
    mask_diagram    fig_mask_diagram      19_mask_rcnn_diagram   Mask R-CNN sec. 3, Fig. 4 (heads)
    fpn_diagram     fig_fpn_diagram       20_fpn_diagram         FPN sec. 3, Fig. 3 (top-down path)

How a label is made, so that it cannot drift from the code: ``record_shapes(stage)`` builds the
stage's model with the stage's own builder (``build_fast_rcnn``, ``build_faster_rcnn``,
``build_mask_rcnn``; R-CNN's ``RCNN`` from ``build_region_cnn``) and its default config,
registers forward hooks on the modules a diagram draws (``ShapeRecorder``), runs the model once
in eval mode on one validation image, and keeps the shape of what each module returned. The
weights are untrained (``pretrained="none"``, seed 0): no shape depends on them, only the counts
R (proposals an untrained RPN keeps) and D (detections) do, and the caption says so.

Each box shows its module, the shape in the docstrings' shorthand and the recorded numbers:

    RoI pooling 7 x 7
    (R, C, 7, 7)
    = (118, 40, 7, 7)

The shorthand is evaluated with the model's own sizes (``Recording.sizes``: C = the backbone's
channels, K = classes, A = anchors per location, R = proposals, ...); ``check_shorthand`` refuses
a diagram whose shorthand does not give the recorded numbers.

Shape shorthand (the stage modules' own): N images, H x W the image (128 x 128 for ours; stages
2-4 enlarge it 2x first, ``input_scale``), C channels of the shared map, R proposals (RoIs),
K object classes, A anchors per location, D detections, S R-CNN's warp size.
Coordinates: a diagram is drawn on a 12.8 x 7.2 inch slide (1920 x 1080 px at 150 dpi), in inches.
"""

from __future__ import annotations

import ast
import operator
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

import torch
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
from torch import nn

from stages.figures.common import Inputs
from stages.selective_search import CACHE_DIR, ProposalCache

STAGES = ("rcnn", "fast_rcnn", "faster_rcnn", "mask_rcnn", "fpn")  # what record_shapes takes


# ------------------------------------------------------------------------------------------------
# Recording the shapes: forward hooks on the real modules
# ------------------------------------------------------------------------------------------------

class ShapeRecorder:
    """Forward hooks that keep the shape of what named modules return (``output``) or receive
    (``input``), while the ``with`` block runs::

        recorder = ShapeRecorder()
        recorder.output("roi_pool", model.head.pooler)   # the pooled RoIs, (R, C, 7, 7)
        with recorder, torch.no_grad():
            model([image])
        recorder.shapes["roi_pool"]                       # (118, 40, 7, 7)

    A module called more than once (R-CNN's CNN over batches of regions) is the batches stacked:
    their first dimensions add up.
    """

    def __init__(self):
        self.shapes: dict[str, tuple] = {}
        self._hooks = []  # (module, "output" | "input", name, pick)
        self._handles = []

    def output(self, name: str, module: nn.Module, pick=lambda out: out):
        """Record ``pick(module's output)``'s shape under ``name``."""
        self._hooks.append((module, "output", name, pick))

    def input(self, name: str, module: nn.Module, pick=lambda args: args[0]):
        """Record ``pick(module's positional arguments)``'s shape under ``name``."""
        self._hooks.append((module, "input", name, pick))

    def _keep(self, name: str, tensor: torch.Tensor) -> None:
        shape = tuple(tensor.shape)
        if name in self.shapes:  # another batch of the same tensor
            before = self.shapes[name]
            if before[1:] != shape[1:]:
                raise ValueError(f"{name}: called with {before} then {shape}")
            shape = (before[0] + shape[0], *shape[1:])
        self.shapes[name] = shape

    def __enter__(self) -> "ShapeRecorder":
        for module, kind, name, pick in self._hooks:
            if kind == "output":
                hook = module.register_forward_hook(
                    lambda m, args, out, name=name, pick=pick: self._keep(name, pick(out)))
            else:  # a pre-hook that returns None leaves the arguments as they are
                hook = module.register_forward_pre_hook(
                    lambda m, args, name=name, pick=pick: self._keep(name, pick(args)))
            self._handles.append(hook)
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


@dataclass(frozen=True)
class Recording:
    """One forward pass: the shape of each named tensor, and the sizes the shorthand names."""

    stage: str
    shapes: dict[str, tuple]  # "roi_pool" -> (118, 40, 7, 7)
    sizes: dict[str, int]  # "R" -> 118, "C" -> 40, ...: from the config and model, not the shapes
    model: str  # the builder and config that made the model: for the caption


def _default_image(data_root) -> tuple[torch.Tensor, int]:
    """Validation image 0 of the built-in synthetic set (generated on first use), and K."""
    src = Inputs("synthetic", data_root)
    return src.image, len(src.class_names) - 1


def record(stage: str, image: torch.Tensor | None = None, num_classes: int | None = None,
           data_root: str | Path = "data") -> Recording:
    """Build ``stage``'s model (untrained, default config, seed 0), run it once in eval mode on
    ``image`` [3, H, W] (default: validation image 0 of the synthetic set) and record the shapes.
    ``stage``: one of ``STAGES``; "fpn" is Mask R-CNN built with ``--fpn --input-scale 1``."""
    if stage not in STAGES:
        raise ValueError(f"stage {stage!r}: expected one of {', '.join(STAGES)}")
    if image is None:
        image, num_classes = _default_image(data_root)
    elif num_classes is None:
        raise ValueError("record(stage, image) needs num_classes too")
    record_stage = {"rcnn": _record_rcnn, "fast_rcnn": _record_fast_rcnn,
                    "faster_rcnn": _record_faster_rcnn, "mask_rcnn": _record_mask_rcnn,
                    "fpn": _record_fpn}[stage]
    with torch.random.fork_rng(devices=[]):  # the caller's random state is left as it was
        torch.manual_seed(0)
        return record_stage(image, num_classes, Path(data_root))


def record_shapes(stage: str, image: torch.Tensor | None = None, num_classes: int | None = None,
                  data_root: str | Path = "data") -> dict[str, tuple]:
    """``{name: shape}`` of one real forward pass of ``stage``'s model (``record``)."""
    return record(stage, image, num_classes, data_root).shapes


def _selective_search_cache(data_root: Path) -> ProposalCache:
    """The proposals stages 1 and 2 share (``<data_root>/proposals``), as the figures read them."""
    from stages.rcnn.config import RCNNConfig
    return ProposalCache(data_root / CACHE_DIR, RCNNConfig().selective_search())


def _record_rcnn(image, K: int, data_root: Path) -> Recording:
    """R-CNN's test-time process (sec. 2.2) on one image: ``RCNN.detect``, with its steps."""
    from stages.rcnn.bbox_regression import BoxRegressors
    from stages.rcnn.config import RCNNConfig
    from stages.rcnn.model import RCNN, build_region_cnn
    from stages.rcnn.svm import ClassSVMs

    cfg = RCNNConfig(pretrained="none")
    cnn = build_region_cnn(cfg, K)
    # untrained SVMs and regressors, of the trained ones' shapes: every margin 0, no box moved
    svms = ClassSVMs(torch.zeros(K, cfg.fc_dim), torch.zeros(K), 1.0)  # w [K, D], b [K]
    regressors = BoxRegressors(torch.zeros(K, 4, cnn.pool5_dim), torch.zeros(K, 4), 1.0)
    cache = _selective_search_cache(data_root)
    model = RCNN(cfg, lambda im: cache.get(im)[0], cnn, svms, regressors).eval()
    recorder = ShapeRecorder()
    recorder.output("C3", cnn.body.stages["C3"])  # body.forward_normalized: hook the level inside
    recorder.output("pool5", cnn.pool5)
    recorder.output("fc7", cnn.fc)
    with recorder:
        out = model.detect(image, return_steps=True)  # no_grad inside
    steps = out["steps"]
    shapes = {"image": tuple(image.shape), "proposals": tuple(steps["proposals"].shape),
              "regions": tuple(steps["regions"].shape), **recorder.shapes,
              "svm_scores": tuple(steps["scores"].shape),
              "nms": tuple(steps["before_regression"].shape), "boxes": tuple(out["boxes"].shape)}
    H, W = image.shape[-2:]
    sizes = {"H": H, "W": W, "R": len(steps["proposals"]), "S": cfg.warp_size,
             "C": cnn.body.out_channels, "fc_dim": cfg.fc_dim, "K": K, "D": len(out["boxes"])}
    return Recording("rcnn", shapes, sizes, "RCNN(RCNNConfig(), build_region_cnn(...), SVMs, "
                                            "regressors)")


def _record_detector(model, image, recorder: ShapeRecorder) -> dict:
    """What stages 2-4 share: the backbone's input and C3, the proposals, the box head; then one
    forward pass in eval mode. Returns the detections of the image."""
    recorder.input("input", model.backbone)  # (N, 3, 2H, 2W): the image enlarged
    recorder.output("proposals", model.proposer, lambda out: out[0][0])  # image 0's (R, 4)
    recorder.output("roi_pool", model.head.pooler)
    recorder.output("fc7", model.head.fc)
    recorder.output("cls_score", model.head.cls_score)
    recorder.output("bbox_pred", model.head.bbox_pred)
    with recorder, torch.no_grad():
        return model.eval()([image])[0]


def _detector_sizes(model, cfg, recorder: ShapeRecorder, image, K: int) -> dict:
    H, W = image.shape[-2:]
    return {"N": 1, "H": H, "W": W, "C": model.backbone.out_channels,
            "R": recorder.shapes["proposals"][0], "K": K, "fc_dim": cfg.fc_dim}


def _record_fast_rcnn(image, K: int, data_root: Path) -> Recording:
    from stages.fast_rcnn.config import FastRCNNConfig
    from stages.fast_rcnn.model import build_fast_rcnn

    cfg = FastRCNNConfig(pretrained="none")
    model = build_fast_rcnn(cfg, K, _selective_search_cache(data_root))
    recorder = ShapeRecorder()
    recorder.output("C3", model.backbone.stages["C3"])
    _record_detector(model, image, recorder)
    return Recording("fast_rcnn", recorder.shapes, _detector_sizes(model, cfg, recorder, image, K),
                     "build_fast_rcnn(FastRCNNConfig())")


def _record_faster_rcnn(image, K: int, data_root: Path) -> Recording:
    from stages.faster_rcnn.config import FasterRCNNConfig
    from stages.faster_rcnn.model import build_faster_rcnn

    cfg = FasterRCNNConfig(pretrained="none")
    model = build_faster_rcnn(cfg, K)
    rpn = model.proposer
    recorder = ShapeRecorder()
    recorder.output("C3", model.backbone.stages["C3"])
    recorder.output("rpn_conv", rpn.head.conv)
    recorder.output("objectness", rpn.head.objectness)
    recorder.output("deltas", rpn.head.deltas)
    _record_detector(model, image, recorder)
    sizes = {**_detector_sizes(model, cfg, recorder, image, K), "A": len(rpn.base_anchors)}
    return Recording("faster_rcnn", recorder.shapes, sizes, "build_faster_rcnn(FasterRCNNConfig())")


def _record_mask_rcnn(image, K: int, data_root: Path) -> Recording:
    from stages.mask_rcnn.config import MaskRCNNConfig
    from stages.mask_rcnn.model import build_mask_rcnn

    cfg = MaskRCNNConfig(pretrained="none")  # one level (C3), RoIAlign: the default
    model = build_mask_rcnn(cfg, K)
    recorder = ShapeRecorder()
    recorder.output("C3", model.backbone.stages["C3"])
    recorder.output("mask_pool", model.mask_head.pooler)
    recorder.output("mask_convs", model.mask_head.convs)
    recorder.output("deconv", model.mask_head.upsample)
    recorder.output("mask_logits", model.mask_head.predictor)
    detections = _record_detector(model, image, recorder)
    shapes = {**recorder.shapes, "detections": tuple(detections["boxes"].shape),
              "masks": tuple(detections["masks"].shape)}
    sizes = {**_detector_sizes(model, cfg, recorder, image, K), "D": len(detections["boxes"]),
             "c": cfg.mask_channels, "m": cfg.mask_size}
    return Recording("mask_rcnn", shapes, sizes, "build_mask_rcnn(MaskRCNNConfig())")


def _record_fpn(image, K: int, data_root: Path) -> Recording:
    from stages.mask_rcnn.config import MaskRCNNConfig
    from stages.mask_rcnn.model import build_mask_rcnn

    # the pyramid on the image as it is (P2 at stride 4), as fig_fpn draws it and as measured
    # best of the pyramid variants (MaskRCNNConfig.fpn's comment)
    cfg = MaskRCNNConfig(pretrained="none", fpn=True, input_scale=1.0)
    model = build_mask_rcnn(cfg, K)
    fpn = model.fpn
    recorder = ShapeRecorder()
    recorder.input("input", model.backbone)
    for k in (2, 3, 4, 5):
        recorder.output(f"C{k}", model.backbone.stages[f"C{k}"])
        recorder.output(f"lateral{k}", fpn.lateral[f"C{k}"])
        recorder.input(f"sum{k}", fpn.output[f"C{k}"])  # lateral + 2x up of the level above
        recorder.output(f"P{k}", fpn.output[f"C{k}"])
    recorder.output("P6", fpn, lambda out: out["P6"])
    with recorder, torch.no_grad():
        model.eval()([image])
    H, W = image.shape[-2:]
    sizes = {"N": 1, "H": H, "W": W, "d": fpn.out_channels,
             **{f"c_{k}": model.backbone.level_channels[f"C{k}"] for k in (2, 3, 4, 5)}}
    return Recording("fpn", recorder.shapes, sizes,
                     "build_mask_rcnn(MaskRCNNConfig(fpn=True, input_scale=1))")


# ------------------------------------------------------------------------------------------------
# The shorthand: "(R, 4(K+1))" -> (118, 16), checked against the recording
# ------------------------------------------------------------------------------------------------

ARITHMETIC = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
              ast.Div: operator.truediv}


def _dimension(node: ast.AST, sizes: dict[str, int]) -> float:
    """One dimension of a shorthand: a number, a letter of ``sizes``, or + - * / of those."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return sizes[node.id]
    if isinstance(node, ast.BinOp) and type(node.op) in ARITHMETIC:
        return ARITHMETIC[type(node.op)](_dimension(node.left, sizes),
                                         _dimension(node.right, sizes))
    raise ValueError(f"not a shape dimension: {ast.unparse(node)}")


def evaluate_shorthand(shorthand: str, sizes: dict[str, int]) -> tuple:
    """A shape in the docstrings' shorthand, with the sizes put in: "(N, 4A, H/4, W/4)" with
    N = 1, A = 9, H = W = 128 -> (1, 36, 32, 32). A number before a letter or "(" multiplies."""
    expression = re.sub(r"(\d)([A-Za-z(])", r"\1*\2", shorthand)  # 4A -> 4*A, 4(K+1) -> 4*(K+1)
    values = [_dimension(d, sizes) for d in ast.parse(expression, mode="eval").body.elts]
    return tuple(int(v) if float(v).is_integer() else v for v in values)


def check_shorthand(shorthand: str, sizes: dict, recorded: tuple, name: str) -> None:
    """Refuse a label whose shorthand does not give the shape the forward pass recorded."""
    expected = evaluate_shorthand(shorthand, sizes)
    if expected != tuple(recorded):
        raise ValueError(f"{name}: the diagram says {shorthand} = {expected}, the forward pass "
                         f"gave {tuple(recorded)}")


def shape_text(shape: tuple) -> str:
    """(118, 40, 7, 7) -> "(118, 40, 7, 7)", the numbers line of a box."""
    return "(" + ", ".join(str(int(s)) for s in shape) + ")"


# ------------------------------------------------------------------------------------------------
# Drawing: boxes and arrows on a 12.8 x 7.2 inch slide
# ------------------------------------------------------------------------------------------------

SLIDE = (12.8, 7.2)  # inches: 1920 x 1080 px at the gallery's 150 dpi
BOX_W, BOX_H = 2.2, 1.3
COLS = (1.3, 3.85, 6.4, 8.95, 11.5)  # the centres of five columns of boxes
LINE = 0.25  # inches per line of text in a box
TITLE_PT, SHAPE_PT, NOTE_PT = 14, 13, 13  # >= 12 pt on a 1920-px-wide slide
CAPTION_CHARS = 122  # characters of 13-pt text across the slide
KIND_COLOURS = {"data": "#e7e7e7", "backbone": "#c6dbef", "proposals": "#fdd0a2",
                "pool": "#c7e9c0", "head": "#dadaeb", "mask": "#fcbba1"}


@dataclass(frozen=True)
class Node:
    """A box: a module (``title``), and for each recorded tensor it shows (``keys``) its shape
    in shorthand and in numbers. ``xy``: its centre, inches; ``kind``: its colour."""

    keys: tuple[str, ...]
    title: str
    shorthand: tuple[str, ...]
    xy: tuple[float, float]
    kind: str
    height: float = BOX_H

    @property
    def id(self) -> str:
        return self.keys[0]


def node(key: str, title: str, shorthand: str, xy, kind: str, height: float = BOX_H) -> Node:
    """A box showing one recorded tensor."""
    return Node((key,), title, (shorthand,), xy, kind, height)


@dataclass(frozen=True)
class Edge:
    """An arrow from box ``a`` to box ``b``. ``corner``: "vh" leaves vertically and arrives
    horizontally, "hv" the other way round, None straight. ``via``: points (inches) to route
    through, around other boxes. ``label``: a few words on the arrow, at ``label_xy`` (inches)
    if given."""

    a: str
    b: str
    label: str = ""
    corner: str | None = None
    via: tuple = ()
    label_xy: tuple | None = None


@dataclass(frozen=True)
class Diagram:
    title: str
    subtitle: str
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    legend: dict[str, str]  # shorthand letter -> what it counts, for the caption
    groups: tuple = ()  # (label, (x1, y1, x2, y2)): a dashed frame around a part (the RPN)


def box_lines(n: Node, recording: Recording) -> list[tuple[str, int, str, str | None]]:
    """The lines of text of a box, (text, size, weight, key): its title, then for each tensor its
    shorthand and "= (numbers)" (with the tensor's name). Checks each shorthand against the
    recording."""
    lines = [(line, TITLE_PT, "bold", None)
             for line in n.title.format(**recording.sizes).split("\n")]
    for key, shorthand in zip(n.keys, n.shorthand):
        shape = recording.shapes[key]
        check_shorthand(shorthand, recording.sizes, shape, key)
        lines += [(shorthand, SHAPE_PT, "normal", None),
                  ("= " + shape_text(shape), SHAPE_PT, "normal", key)]
    return lines


def draw_diagram(diagram: Diagram, recording: Recording, caption: str) -> Figure:
    """The diagram on a slide: title, boxes with their shapes, arrows, caption."""
    fig = Figure(figsize=SLIDE)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, SLIDE[0])
    ax.set_ylim(0, SLIDE[1])
    ax.set_axis_off()
    ax.text(SLIDE[0] / 2, 7.1, diagram.title, ha="center", va="top", fontsize=18, weight="bold")
    ax.text(SLIDE[0] / 2, 6.68, diagram.subtitle, ha="center", va="top", fontsize=NOTE_PT)
    patches = {}
    for label, (x1, y1, x2, y2) in diagram.groups:
        ax.add_patch(FancyBboxPatch((x1, y1), x2 - x1, y2 - y1, boxstyle="round,pad=0.05",
                                    facecolor="none", edgecolor="#e6550d", linestyle="--",
                                    linewidth=1.8))
        ax.text(x1 + 0.1, y1 + 0.1, label, ha="left", va="bottom", fontsize=NOTE_PT,
                color="#a63603", style="italic")
    for n in diagram.nodes:
        x, y = n.xy
        box = FancyBboxPatch((x - BOX_W / 2, y - n.height / 2), BOX_W, n.height,
                             boxstyle="round,pad=0.02,rounding_size=0.12", linewidth=1.5,
                             facecolor=KIND_COLOURS[n.kind], edgecolor="#444444")
        ax.add_patch(box)
        patches[n.id] = box
        lines = box_lines(n, recording)
        top = y + len(lines) * LINE / 2
        for i, (text, size, weight, key) in enumerate(lines):
            ax.text(x, top - (i + 0.5) * LINE, text, ha="center", va="center", fontsize=size,
                    weight=weight, gid=f"shape:{key}" if key else None)
    where = {n.id: n for n in diagram.nodes}
    for e in diagram.edges:
        _draw_edge(ax, where[e.a], where[e.b], patches[e.a], patches[e.b], e)
    ax.text(0.15, 0.62, caption, ha="left", va="top", fontsize=NOTE_PT, wrap=False,
            color="#333333")
    return fig


def _draw_edge(ax, a: Node, b: Node, patch_a, patch_b, e: Edge) -> None:
    style = dict(arrowstyle="-|>", mutation_scale=22, linewidth=2.0, color="#333333")
    if e.via:  # a route around other boxes: lines through the points, the arrow on the last leg
        first, last = e.via[0], e.via[-1]
        start = (first[0], a.xy[1] + (a.height / 2 if first[1] > a.xy[1] else -a.height / 2))
        end = (last[0], b.xy[1] + (b.height / 2 if last[1] > b.xy[1] else -b.height / 2))
        points = [start, *e.via, end]
        xs, ys = zip(*points[:-1])
        ax.plot(xs, ys, color=style["color"], linewidth=style["linewidth"],
                solid_capstyle="butt")
        ax.add_patch(FancyArrowPatch(points[-2], end, shrinkA=0, shrinkB=2, **style))
        label_at = ((first[0] + last[0]) / 2, (first[1] + last[1]) / 2)
    else:
        connection = {None: "arc3,rad=0", "vh": "angle,angleA=90,angleB=0,rad=0",
                      "hv": "angle,angleA=0,angleB=90,rad=0"}[e.corner]
        ax.add_patch(FancyArrowPatch(a.xy, b.xy, patchA=patch_a, patchB=patch_b,
                                     connectionstyle=connection, shrinkA=2, shrinkB=2, **style))
        side = BOX_W / 2 if b.xy[0] > a.xy[0] else -BOX_W / 2  # from a's side facing b
        if e.corner == "vh":  # the label on the horizontal leg, up to b's side
            label_at = ((a.xy[0] + b.xy[0] - side) / 2, b.xy[1])
        elif e.corner == "hv":  # on the horizontal leg, from a's side
            label_at = ((a.xy[0] + side + b.xy[0]) / 2, a.xy[1])
        else:
            label_at = ((a.xy[0] + b.xy[0]) / 2, (a.xy[1] + b.xy[1]) / 2)
    if e.label:
        vertical = a.xy[0] == b.xy[0] and not e.via
        if e.label_xy:
            label_at, vertical = e.label_xy, True
        ax.text(label_at[0] + (0.12 if vertical else 0), label_at[1], e.label,
                ha="left" if vertical else "center", va="center", fontsize=NOTE_PT,
                style="italic",
                bbox=dict(boxstyle="round,pad=0.15", facecolor="white", edgecolor="none"))


def legend_entry(letters: str, what: str, sizes: dict) -> str:
    """One letter of the shorthand and its value: "R = 118 selective-search proposals"; two
    joined by a comma are a size, "H x W = 128 x 128 px"; more, a range, "c_2..c_5 = 24, ..."."""
    names = letters.split(",")
    values = [str(sizes[n]) for n in names]
    if len(names) == 1:
        return f"{names[0]} = {values[0]} {what}"
    if len(names) == 2:
        return f"{' x '.join(names)} = {' x '.join(values)} {what}"
    return f"{names[0]}..{names[-1]} = {', '.join(values)} {what}"


def caption_for(recording: Recording, legend: dict[str, str], image_note: str) -> str:
    """What the numbers are: the model, the image, and each letter of the shorthand, wrapped to
    the slide's width (about 120 characters at 13 pt)."""
    letters = ", ".join(legend_entry(k, what, recording.sizes) for k, what in legend.items())
    text = (f"Shapes recorded by forward hooks in one forward pass (eval mode) of "
            f"{recording.model}, untrained, on {image_note}: {letters}")
    return textwrap.fill(text, width=CAPTION_CHARS)


def _image_note(src: Inputs | None) -> str:
    if src is None:
        return "validation image 0 of the synthetic set"
    return f"validation image {src.image_index} of {src.data}"


def _record_for(src: Inputs, stage: str) -> Recording:
    return record(stage, src.image, len(src.class_names) - 1, src.data_root)


# ------------------------------------------------------------------------------------------------
# The five diagrams
# ------------------------------------------------------------------------------------------------

TOP, MID, BOTTOM = 5.45, 3.55, 1.75  # the rows of boxes (y of their centres)

RCNN_DIAGRAM = Diagram(
    title="R-CNN (Girshick et al. 2014): the CNN runs on every proposal",
    subtitle="sec. 2.2, test time: propose, warp each region, CNN, score with SVMs, NMS, "
             "regress the boxes (App. C)",
    nodes=(
        node("image", "image", "(3, H, W)", (COLS[0], TOP), "data"),
        node("proposals", "selective search", "(R, 4)", (COLS[1], TOP), "proposals"),
        node("regions", "crop + warp\nto S x S (App. A)", "(R, 3, S, S)", (COLS[2], TOP), "pool",
             height=1.55),
        node("C3", "CNN: backbone\nto C3, per region", "(R, C, S/8, S/8)", (COLS[3], TOP),
             "backbone", height=1.55),
        node("pool5", "pool5: max pool", "(R, C, 7, 7)", (COLS[4], TOP), "pool"),
        node("fc7", "fc6, fc7", "(R, fc_dim)", (COLS[4], BOTTOM), "head"),
        node("svm_scores", "linear SVMs,\none per class", "(R, K)", (COLS[3], BOTTOM), "head",
             height=1.55),
        node("nms", "greedy NMS\nper class, IoU 0.3", "(D, 4)", (COLS[2], BOTTOM), "head",
             height=1.55),
        node("boxes", "box regression\n(App. C)", "(D, 4)", (COLS[1], BOTTOM), "head",
             height=1.55),
    ),
    edges=(
        Edge("image", "proposals"), Edge("proposals", "regions"), Edge("regions", "C3"),
        Edge("C3", "pool5"), Edge("pool5", "fc7"), Edge("fc7", "svm_scores"),
        Edge("svm_scores", "nms"), Edge("nms", "boxes"),
        Edge("pool5", "boxes", "pool5 of the D kept regions",
             via=((COLS[4] - 0.75, MID), (COLS[1], MID))),
    ),
    legend={"H,W": "px: the image", "R": "selective-search proposals",
            "S": "px: the warp (RCNNConfig.warp_size)", "C": "channels of C3 (EfficientNet-Lite0)",
            "fc_dim": "(fc6, fc7 width)", "K": "classes", "D": "detections kept"},
)

TOP_2, MID_2 = 5.05, 2.75  # the rows of a two-row diagram


def fast_rcnn_nodes(top: float, mid: float) -> tuple:
    """Fast R-CNN without its proposer, on rows ``top`` and ``mid``: the image, the shared map, RoI
    pooling, fc6 / fc7 and the two sibling outputs. Faster R-CNN keeps all of them and replaces the
    proposer only (its diagram draws the same nodes), so the two diagrams cannot drift apart."""
    return (
        node("input", "image, enlarged 2x", "(N, 3, 2H, 2W)", (COLS[0], top), "data"),
        node("C3", "backbone to C3\n(the shared map)", "(N, C, H/4, W/4)", (COLS[1], top),
             "backbone", height=1.55),
        node("roi_pool", "RoI pooling 7 x 7", "(R, C, 7, 7)", (COLS[2], top), "pool"),
        node("fc7", "fc6, fc7", "(R, fc_dim)", (COLS[3], top), "head"),
        node("cls_score", "cls_score\n(softmax)", "(R, K+1)", (COLS[4], top), "head",
             height=1.55),
        node("bbox_pred", "bbox_pred\n(a box per class)", "(R, 4(K+1))", (COLS[4], mid), "head",
             height=1.55),
    )

FAST_DIAGRAM = Diagram(
    title="Fast R-CNN (Girshick 2015): one CNN pass per image, RoI pooling per proposal",
    subtitle="sec. 2, Fig. 1: the shared map is computed once; each proposal is pooled from it "
             "to 7 x 7, then fc layers and two sibling outputs",
    nodes=(
        *fast_rcnn_nodes(TOP_2, MID_2),
        node("proposals", "selective search\n(cached)", "(R, 4)", (COLS[1], MID_2),
             "proposals", height=1.55),
    ),
    edges=(
        Edge("input", "C3"), Edge("C3", "roi_pool"), Edge("roi_pool", "fc7"),
        Edge("fc7", "cls_score"), Edge("fc7", "bbox_pred"),
        Edge("input", "proposals", corner="vh"),
        Edge("proposals", "roi_pool", "R boxes", corner="hv"),
    ),
    legend={"N": "image", "H,W": "px: the image (enlarged 2x: input_scale)",
            "C": "channels of C3 (EfficientNet-Lite0)", "R": "selective-search proposals",
            "fc_dim": "(fc6, fc7 width)", "K": "classes (+1: background)"},
)

FASTER_DIAGRAM = Diagram(
    title="Faster R-CNN (Ren et al. 2015): the proposals come from the shared map",
    subtitle="sec. 3, Fig. 2-3: a Region Proposal Network slides a 3 x 3 conv over the map and "
             "scores A anchors per location; the head is Fast R-CNN's",
    nodes=(
        *fast_rcnn_nodes(TOP, MID),  # Fast R-CNN as it was; the RPN below replaces its proposer
        node("rpn_conv", "RPN: 3 x 3 conv", "(N, C, H/4, W/4)", (COLS[1], MID), "proposals"),
        node("objectness", "objectness,\nA = {A} anchors", "(N, A, H/4, W/4)", (COLS[2], MID),
             "proposals", height=1.55),
        node("deltas", "box deltas\nper anchor", "(N, 4A, H/4, W/4)", (COLS[2], BOTTOM + 0.1),
             "proposals", height=1.55),
        node("proposals", "proposal layer:\ntop-N, NMS 0.7", "(R, 4)", (COLS[3], MID),
             "proposals", height=1.55),
    ),
    edges=(
        Edge("input", "C3"), Edge("C3", "roi_pool"), Edge("roi_pool", "fc7"),
        Edge("fc7", "cls_score"), Edge("fc7", "bbox_pred"),
        Edge("C3", "rpn_conv"), Edge("rpn_conv", "objectness"),
        Edge("rpn_conv", "deltas", corner="vh"), Edge("objectness", "proposals"),
        Edge("deltas", "proposals", corner="hv"), Edge("proposals", "roi_pool"),
    ),
    legend={"N": "image", "H,W": "px: the image (enlarged 2x: input_scale)",
            "C": "channels of C3", "A": "anchors per location (3 sizes x 3 ratios)",
            "R": "proposals this untrained RPN keeps (at most rpn_post_nms_test)",
            "fc_dim": "(fc width)",
            "K": "classes (+1: background)"},
    groups=(("Region Proposal\nNetwork (sec. 3.1)", (COLS[1] - 1.25, 0.8, COLS[3] + 1.25, 4.4)),),
)

MASK_DIAGRAM = Diagram(
    title="Mask R-CNN (He et al. 2017): a box head and a mask head on RoIAlign",
    subtitle="sec. 3, Fig. 4 (right): RoIAlign (no rounding) feeds the box head; at test time the "
             "mask head runs on the D detected boxes",
    nodes=(
        node("proposals", "RPN proposals\n(stage 3's)", "(R, 4)", (COLS[0], TOP), "proposals",
             height=1.55),
        node("roi_pool", "RoIAlign 7 x 7", "(R, C, 7, 7)", (COLS[1], TOP), "pool"),
        node("fc7", "fc6, fc7", "(R, fc_dim)", (COLS[2], TOP), "head"),
        Node(("cls_score", "bbox_pred"), "cls_score +\nbbox_pred", ("(R, K+1)", "(R, 4(K+1))"),
             (COLS[3], TOP - 0.1), "head", height=1.8),
        node("detections", "detect:\nsoftmax, NMS", "(D, 4)", (COLS[4], TOP), "head", height=1.55),
        node("C3", "shared map:\nC3 of the 2x image", "(N, C, H/4, W/4)", (COLS[0], MID - 0.1),
             "backbone", height=1.55),
        node("mask_pool", "RoIAlign 14 x 14", "(D, C, 14, 14)", (COLS[1], BOTTOM), "pool"),
        node("mask_convs", "4 x (3 x 3 conv)", "(D, c, 14, 14)", (COLS[2], BOTTOM), "mask"),
        node("deconv", "2 x 2 deconv,\nstride 2", "(D, c, m, m)", (COLS[3], BOTTOM), "mask",
             height=1.55),
        node("mask_logits", "1 x 1 conv:\nK masks, m x m", "(D, K, m, m)", (COLS[4], BOTTOM),
             "mask", height=1.55),
    ),
    edges=(
        Edge("proposals", "roi_pool"), Edge("roi_pool", "fc7"), Edge("fc7", "cls_score"),
        Edge("cls_score", "detections"), Edge("C3", "roi_pool"), Edge("C3", "mask_pool"),
        Edge("detections", "mask_pool", "the D detected boxes (training: the positive RoIs)",
             via=((COLS[4], MID), (COLS[1] + 0.55, MID))),
        Edge("mask_pool", "mask_convs"), Edge("mask_convs", "deconv"),
        Edge("deconv", "mask_logits"),
    ),
    legend={"N": "image", "H,W": "px: the image",
            "C": "channels of C3", "R": "proposals this untrained RPN keeps",
            "fc_dim": "(fc width)", "K": "classes",
            "D": "detections (at most detections_per_image)",
            "c": "mask-head channels", "m": "px: the mask size"},
)

FPN_ROWS = {5: 5.7, 4: 4.3, 3: 2.9, 2: 1.5}  # the level's row (C5 on top, as in FPN Fig. 3)
FPN_H = 0.95


def _fpn_nodes() -> tuple[Node, ...]:
    nodes = []
    for k, y in FPN_ROWS.items():
        s = 2 ** k  # the level's stride
        nodes.append(node(f"C{k}", f"C{k}, stride {s}", f"(N, c_{k}, H/{s}, W/{s})", (COLS[0], y),
                          "backbone", FPN_H))
        nodes.append(node(f"lateral{k}", "lateral 1 x 1", f"(N, d, H/{s}, W/{s})", (COLS[1], y),
                          "pool", FPN_H))
        if k < 5:  # C5's lateral is the top of the top-down path: nothing to add to it
            nodes.append(node(f"sum{k}", "+ 2x up (nearest)", f"(N, d, H/{s}, W/{s})",
                              (COLS[2], y), "head", FPN_H))
        nodes.append(node(f"P{k}", f"3 x 3 conv: P{k}", f"(N, d, H/{s}, W/{s})", (COLS[3], y),
                          "mask", FPN_H))
    nodes.append(node("P6", "P6: P5, stride 2", "(N, d, H/64, W/64)", (COLS[4], FPN_ROWS[5]),
                      "mask", FPN_H))
    return tuple(nodes)


FPN_DIAGRAM = Diagram(
    title="Feature Pyramid Network (Lin et al. 2017): the top-down path",
    subtitle="sec. 3, Fig. 3: each level's 1 x 1 lateral plus the coarser sum upsampled 2x, "
             "smoothed by a 3 x 3 conv; every level d channels",
    nodes=_fpn_nodes(),
    edges=(
        *(Edge(f"C{k}", f"C{k + 1}") for k in (2, 3, 4)),  # bottom-up: the backbone
        *(Edge(f"C{k}", f"lateral{k}") for k in (2, 3, 4, 5)),
        *(Edge(f"lateral{k}", f"sum{k}") for k in (2, 3, 4)),
        # C5's lateral goes on two ways: smoothed into P5, and 2x up into C4's sum
        Edge("lateral5", "sum4", "2x up", corner="hv",
             label_xy=(COLS[2], (FPN_ROWS[5] + FPN_ROWS[4]) / 2)),
        Edge("sum4", "sum3", "2x up"),
        Edge("sum3", "sum2", "2x up"),
        Edge("lateral5", "P5"), *(Edge(f"sum{k}", f"P{k}") for k in (2, 3, 4)),
        Edge("P5", "P6"),
    ),
    legend={"N": "image", "H,W": "px: the image (input_scale 1)",
            "c_2,c_3,c_4,c_5": "channels of C2..C5 (EfficientNet-Lite0)",
            "d": "channels of every level (MaskRCNNConfig.fpn_channels)"},
)

DIAGRAMS = {"rcnn": RCNN_DIAGRAM, "fast_rcnn": FAST_DIAGRAM, "faster_rcnn": FASTER_DIAGRAM,
            "mask_rcnn": MASK_DIAGRAM, "fpn": FPN_DIAGRAM}


def diagram_figure(stage: str, src: Inputs | None = None) -> Figure:
    """``stage``'s diagram, labelled from one forward pass on ``src``'s image (None: validation
    image 0 of the synthetic set)."""
    recording = _record_for(src, stage) if src is not None else record(stage)
    diagram = DIAGRAMS[stage]
    caption = caption_for(recording, diagram.legend, _image_note(src))
    if stage == "mask_rcnn":  # the last step, outside the heads: the class's mask, pasted
        check_shorthand("(D, 1, H, W)", recording.sizes, recording.shapes["masks"], "masks")
        caption += (f"\nThen each detection's mask of its class, pasted into its box: "
                    f"(D, 1, H, W) = {shape_text(recording.shapes['masks'])}")
    return draw_diagram(diagram, recording, caption)


def fig_rcnn_diagram(src: Inputs) -> Figure:
    """R-CNN's test-time process (sec. 2.2), every box labelled from ``RCNN.detect``."""
    return diagram_figure("rcnn", src)


def fig_fast_diagram(src: Inputs) -> Figure:
    """Fast R-CNN (Fig. 1): image -> backbone -> RoI pooling -> fc -> cls + box."""
    return diagram_figure("fast_rcnn", src)


def fig_faster_diagram(src: Inputs) -> Figure:
    """Faster R-CNN (Fig. 2-3): the shared map -> RPN -> proposals -> Fast R-CNN's head."""
    return diagram_figure("faster_rcnn", src)


def fig_mask_diagram(src: Inputs) -> Figure:
    """Mask R-CNN's heads (Fig. 4, right): RoIAlign -> box head; RoIAlign 14 -> mask head."""
    return diagram_figure("mask_rcnn", src)


def fig_fpn_diagram(src: Inputs) -> Figure:
    """FPN's top-down path (Fig. 3): C2..C5 -> lateral 1 x 1 -> + 2x up -> 3 x 3 -> P2..P6."""
    return diagram_figure("fpn", src)


def shape_labels(fig: Figure) -> dict[str, str]:
    """The numbers line of every tensor a diagram shows: {name: "= (118, 40, 7, 7)"}, the names
    of ``record_shapes`` (what the tests compare)."""
    return {t.get_gid()[len("shape:"):]: t.get_text() for ax in fig.axes for t in ax.texts
            if (t.get_gid() or "").startswith("shape:")}

