"""``python -m stages.predict``: every trained stage on your own photos, side by side.

    python -m stages.predict photo.jpg                  each run under runs/, one panel each
    python -m stages.predict photos/ --stages faster_rcnn mask_rcnn --score-thresh 0.7
    python -m stages.predict street.png --runs runs/pennfudan --out street_predictions/

The runs are ``<runs>/<stage>/checkpoint.pt`` for the stages rcnn, fast_rcnn, faster_rcnn and
mask_rcnn (``--stages``; default: every one present, in the papers' order), each rebuilt as it was
trained (``stages.trained_run``: its config, its classes, its image size). The images are files,
or folders: every .png .jpg .jpeg .bmp .tif .tiff .webp in a folder (sorted, not its sub-folders).
Each is read upright in 8-bit RGB whatever its kind (``read_photo``), resized as each run was
trained (the longer side to its ``--long-side``), and the detections are mapped back to the
photo's own pixels. Written to ``--out`` (default predictions/), atomically:

    <stem>.png       one panel per stage, on the photo: boxes, class names and scores, and masks
                     (stage 4, one colour per object). Each title: the detections scoring at least
                     --score-thresh, the proposals the stage scored and the ms they took, and the
                     ms of the network (everything after the proposals, and the backbone before)
    detections.json  COCO results format: a list of {image_id, category_id, bbox [x, y, w, h] in
                     the photo's pixels, score, segmentation (RLE, masks only)}, each also with
                     file_name, stage and category_name (pycocotools' loadRes ignores extra keys).
                     category_id is the label in that run's own classes: runs trained on other
                     data number other classes, and category_name says which

An unreadable image is skipped with one line naming it and why; the run goes on, and the last lines
count the skipped images and give, per stage, the mean ms per image (proposals + network).

Time is counted as the evaluator counts it (``stages.evaluation.evaluate``): the wall time of the
model call, split into the proposals' share (``timing["proposals"]``) and the rest; proposals read
from the selective-search cache (Fast R-CNN) are charged the seconds their computation took, not
the file read. Each run's first call comes once untimed (``warmup``), as in the evaluator.

In a notebook, the same function the command calls:

    results = predict(["photo.jpg"], runs="runs")     # nothing written (out=None)
    figure_for(results[0])                            # the panels, a matplotlib Figure
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from PIL import Image, ImageOps, UnidentifiedImageError

from stages.data.datasets import DatasetError, to_rgb8
from stages.data.transforms import Resize
from stages.data.coco_format import mask_to_rle, xyxy_to_xywh
from stages.figures.common import CAPTION, DPI, FONTS
from stages.figures.draw import draw_detections
from stages import files
from stages.training.checkpoint import CheckpointError
from stages.flags import command_parser
from stages.devices import DEVICES, choose_device, synchronize
from stages.training.engine import CHECKPOINT
from stages.trained_run import STAGES, LoadedRun, command_for, load_run
from stages.run import USER_ERRORS

PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
DETECTIONS = "detections.json"
# the stages a run folder may hold: runs/mask_rcnn is also where torchvision's path writes
FOLDER_HOLDS = {"mask_rcnn": ("mask_rcnn", "mask_rcnn_torchvision")}
# a panel is ~5-6 inches wide, ~900 px at 150 dpi: the photo is drawn at most this large
DISPLAY_SIDE = 1024


# ------------------------------------------------------------------------------------------------
# Photos: any file PIL reads, as upright 8-bit RGB
# ------------------------------------------------------------------------------------------------

def read_photo(path: str | Path) -> np.ndarray:
    """An image file as RGB uint8 (H, W, 3), the way a viewer shows it.

    Upright: the camera's EXIF orientation applied (a phone's portrait photo is stored sideways).
    Grey and palette images become three equal channels; an alpha channel is dropped (the colours
    are kept as stored); 16- and 32-bit grey (PNG mode I;16, TIFF I and F) are stretched from their
    darkest to their brightest value onto 0..255, where ``convert("RGB")`` would clip every value
    above 255 to white (a flat one becomes black). A missing or unreadable file raises
    ``DatasetError`` naming the file and why.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such image file")
    try:
        with Image.open(path) as im:
            return to_rgb8(ImageOps.exif_transpose(im))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, TypeError,
            Image.DecompressionBombError) as e:
        raise DatasetError(f"{path}: cannot read the image ({e})") from None


def list_images(paths) -> list[Path]:
    """The image files of ``paths`` (files, and folders: their files with a ``PHOTO_SUFFIXES``
    suffix, any case, sorted, not recursive). A file is listed whatever its suffix: whether it is
    an image is for ``read_photo`` to find out (and to say)."""
    found = []
    for p in map(Path, [paths] if isinstance(paths, (str, Path)) else paths):
        if p.is_dir():
            inside = sorted(f for f in p.iterdir()
                            if f.is_file() and f.suffix.lower() in PHOTO_SUFFIXES)
            if not inside:
                print(f"[predict] {p}: no image files in it ({' '.join(PHOTO_SUFFIXES)})")
            found += inside
        else:
            found.append(p)
    return found


# A run trained on images as they were (no --long-side: the synthetic set's 128 px, say) would get
# a phone's 4000 x 3000 photo at full size, minutes of selective search and gigabytes of feature
# maps: larger photos are read at this long side (the Mask R-CNN paper's scale), said in the title.
MAX_LONG_SIDE = 800


def model_input(photo: np.ndarray, long_side: int | None) -> torch.Tensor:
    """The photo as a run sees it: float [3, h, w] in [0, 1], resized by the same ``Resize`` the
    run trained with (the longer side to ``long_side``; None: as it is, up to ``MAX_LONG_SIDE``)."""
    image = torch.from_numpy(photo).permute(2, 0, 1).float() / 255  # (H, W, 3) -> (3, H, W)
    if not long_side and max(photo.shape[:2]) > MAX_LONG_SIDE:
        long_side = MAX_LONG_SIDE
    if long_side:
        H, W = image.shape[-2:]
        nothing = {"boxes": torch.zeros(0, 4), "masks": torch.zeros(0, H, W, dtype=torch.uint8)}
        image, _ = Resize(long_side)(image, nothing)
    return image


# ------------------------------------------------------------------------------------------------
# One stage on one photo
# ------------------------------------------------------------------------------------------------

@dataclass
class StageResult:
    """One stage's detections on one photo, those scoring at least the threshold.

    boxes [D, 4] (x1, y1, x2, y2) in the *photo's* pixels; labels [D] in 1..K of ``class_names``;
    scores [D]; masks [D, h, w] mask probabilities at the size the run saw (``input_size``), or
    None (no mask branch): ``masks_at`` maps them onto any size, the photo's among them."""

    stage: str
    title: str  # "Mask R-CNN"
    class_names: list[str]
    boxes: torch.Tensor
    labels: torch.Tensor
    scores: torch.Tensor
    masks: torch.Tensor | None
    input_size: tuple[int, int]  # (h, w) of the image the run saw
    num_proposals: int | None  # the proposals it scored (None: the model does not say)
    proposals: str  # where they came from: "selective-search", "RPN"
    ms_proposals: float
    ms_network: float
    source: str  # the run: "runs/mask_rcnn/checkpoint.pt (120 steps, 240 s of training)"

    def masks_at(self, size: tuple[int, int], index=None) -> torch.Tensor:
        """Binary masks bool [D, H, W] at ``size`` = (H, W) (or only the detections ``index``):
        the probabilities resized bilinearly, then thresholded at 0.5 (Mask R-CNN sec. 3.1)."""
        probs = self.masks if index is None else self.masks[index]
        out = torch.zeros((len(probs), *size), dtype=torch.bool)
        for i, p in enumerate(probs):  # one at a time: a 12-megapixel photo, 100 masks
            out[i] = F.interpolate(p[None, None], size=size, mode="bilinear",
                                   align_corners=False)[0, 0] >= 0.5  # (1, 1, h, w) -> (H, W)
        return out


def detect(run: LoadedRun, photo: np.ndarray, score_thresh: float = 0.5,
           device: torch.device | str = "cpu") -> StageResult:
    """``run``'s detections on ``photo`` (uint8 (H, W, 3)) scoring at least ``score_thresh``,
    mapped back to the photo's pixels, with the proposal count and the time split."""
    image = model_input(photo, run.long_side).to(device)  # (3, h, w)
    synchronize(device)
    t0 = time.perf_counter()
    with torch.no_grad():
        out = run.model([image])[0]
    synchronize(device)
    wall = time.perf_counter() - t0
    timing = out.get("timing") or {}
    proposals_s = float(timing.get("proposals", 0.0))
    if "cache_read" in timing:  # charge the recorded computation, not the file read (evaluator)
        wall += proposals_s - float(timing["cache_read"])

    keep = out["scores"] >= score_thresh  # (D,)
    H, W = photo.shape[:2]
    h, w = image.shape[-2:]
    to_photo = torch.tensor([W / w, H / h, W / w, H / h])  # the inverse of Resize's scale
    masks = out.get("masks")
    if masks is not None:
        masks = masks[keep].detach().float().cpu()
        masks = masks[:, 0] if masks.dim() == 4 else masks  # (D, 1, h, w) -> (D, h, w)
    return StageResult(
        stage=run.stage, title=run.title, class_names=run.class_names,
        boxes=out["boxes"][keep].detach().float().cpu() * to_photo,
        labels=out["labels"][keep].detach().cpu(),
        scores=out["scores"][keep].detach().float().cpu(),
        masks=masks, input_size=(h, w), num_proposals=out.get("num_proposals"),
        proposals=run.proposals, ms_proposals=1000 * proposals_s,
        ms_network=1000 * (wall - proposals_s), source=run.describe())


@dataclass
class PhotoResult:
    """Every chosen stage's ``StageResult`` on one photo (in the order of ``stages``)."""

    path: Path
    image_id: int  # 1, 2, ... in the order the photos were done (detections.json's image_id)
    size: tuple[int, int]  # (H, W) of the photo
    score_thresh: float
    stages: list[StageResult] = field(default_factory=list)


# ------------------------------------------------------------------------------------------------
# The runs
# ------------------------------------------------------------------------------------------------

def choose_runs(runs: str | Path = "runs", stages=None, device="cpu",
                data_root: str | Path = "data", verbose: bool = True) -> list[LoadedRun]:
    """The runs ``<runs>/<stage>`` of ``stages`` (in that order), rebuilt on ``device``.

    ``stages=None``: every stage whose checkpoint is there, in the papers' order; one that cannot
    be used (damaged, unfinished) is skipped with a line. Named stages must all be usable: a missing
    one raises ``CheckpointError`` with one line per missing run naming the command that makes it.
    """
    runs = Path(runs)
    if stages is None:
        present = [s for s in STAGES if (runs / s / CHECKPOINT).is_file()]
        if not present:
            out = "" if runs == Path("runs") else f" --out {runs}"
            compare = f"python -m stages.compare{out}"
            raise CheckpointError(
                f"no trained run under {runs}/ (looked for {runs}/<stage>/{CHECKPOINT}, stages "
                f"{', '.join(STAGES)}): run {compare} for all four, or one stage: "
                f"{command_for(runs / 'faster_rcnn')}")
        loaded = []
        for s in present:
            try:
                loaded.append(load_run(runs / s, device, data_root, FOLDER_HOLDS.get(s, (s,))))
            except CheckpointError as e:
                print(f"[predict] skipped {s}: {e}")
        if not loaded:
            raise CheckpointError(f"no usable run under {runs}/ (see the lines above)")
    else:
        unknown = [s for s in stages if s not in STAGES]
        if unknown:
            raise ValueError(f"stages {unknown}: expected some of {', '.join(STAGES)}")
        missing = [f"no trained run at {runs / s / CHECKPOINT}: run {command_for(runs / s)}"
                   for s in stages if not (runs / s / CHECKPOINT).is_file()]
        if missing:
            raise CheckpointError("\n".join(missing))
        loaded = [load_run(runs / s, device, data_root, FOLDER_HOLDS.get(s, (s,))) for s in stages]
    if verbose:
        for r in loaded:
            size = f"the longer side resized to {r.long_side} px" if r.long_side else "as they are"
            print(f"[predict] {r.title}: {r.describe()}; images {size}; "
                  f"classes {r.class_names[1:]}")
    return loaded


def check_classes(loaded: list[LoadedRun], expect_classes=None) -> list[str]:
    """The warning lines about classes: with ``expect_classes`` (names, "background" first or
    not), one per run trained on others; without, one if the runs disagree among themselves. Each
    panel names its own classes either way."""
    if expect_classes is not None:
        expected = [c for c in expect_classes if c != "background"]
        return [f"[predict] {r.path} was trained on classes {r.class_names[1:]}, not {expected}: "
                f"its panel names its own classes" for r in loaded if r.class_names[1:] != expected]
    if len({tuple(r.class_names) for r in loaded}) > 1:
        which = "; ".join(f"{r.stage} {r.class_names[1:]}" for r in loaded)
        return [f"[predict] warning: the runs were trained on different classes: {which}; each "
                f"panel names its own"]
    return []


# ------------------------------------------------------------------------------------------------
# What is written: the figure, and the COCO results
# ------------------------------------------------------------------------------------------------

def panel_title(r: StageResult) -> str:
    """Three lines: what the stage found, what it looked at, and what that cost."""
    n = len(r.boxes)
    found = f"{r.title}: {n} detection{'' if n == 1 else 's'}"
    count = f"{r.num_proposals} " if r.num_proposals is not None else ""
    h, w = r.input_size
    return (f"{found}\n{count}{r.proposals} proposals: {r.ms_proposals:.0f} ms\n"
            f"network: {r.ms_network:.0f} ms on {w} x {h} px")


def figure_for(result: PhotoResult, photo: np.ndarray | None = None) -> Figure:
    """One panel per stage (four: 2 x 2), on the photo (read again from ``result.path`` unless
    given): boxes, ``name score`` captions and masks, one colour per detection. The photo is drawn
    at most ``DISPLAY_SIDE`` px on its longer side (a panel is about that wide on a slide)."""
    photo = read_photo(result.path) if photo is None else photo
    H, W = photo.shape[:2]
    s = min(1.0, DISPLAY_SIDE / max(H, W))
    w, h = max(1, round(W * s)), max(1, round(H * s))
    shown = np.asarray(Image.fromarray(photo).resize((w, h), Image.BILINEAR)) if s < 1 else photo
    n = max(1, len(result.stages))
    # four panels as 2 x 2: about a 16:9 slide's shape (1 x 4 would be a sliver across it)
    rows, cols = (2, 2) if n == 4 else (1, n)
    panel = 5.0 if n == 4 else 6.0  # inches per panel: a 2 x 2 grid 10 inches wide
    with matplotlib.rc_context(FONTS):  # sizes for a slide: text is sized when it is made
        fig = Figure(figsize=(panel * cols, rows * (panel * min(H / W, 1.5) + 1.6) + 0.8),
                     layout="compressed")
        axes = fig.subplots(rows, cols, squeeze=False).reshape(-1)
        for ax, r in zip(axes, result.stages):
            to_shown = torch.tensor([w / W, h / H, w / W, h / H])
            masks = r.masks_at((h, w)) if r.masks is not None else None
            draw_detections(ax, shown, r.boxes * to_shown, r.labels, r.scores, masks, r.class_names,
                            linewidth=2.5, fontsize=CAPTION, instance_colours=True)
            ax.set_title(panel_title(r), loc="left")
        fig.suptitle(f"{result.path.name} ({W} x {H} px)\neach trained stage's detections "
                     f"scoring at least {result.score_thresh:g}")
    return fig


def coco_results(result: PhotoResult) -> list[dict]:
    """One photo's detections as COCO result entries (see the module docstring), boxes and masks
    in the photo's pixels."""
    entries = []
    for r in result.stages:
        xywh = xyxy_to_xywh(r.boxes)  # (D, 4) (x1, y1, x2, y2) -> (x, y, w, h)
        for i in range(len(r.boxes)):
            label = int(r.labels[i])
            entry = {"image_id": result.image_id, "file_name": str(result.path), "stage": r.stage,
                     "category_id": label, "category_name": r.class_names[label],
                     "bbox": [round(float(v), 2) for v in xywh[i]], "score": float(r.scores[i])}
            if r.masks is not None:
                entry["segmentation"] = mask_to_rle(r.masks_at(result.size, [i]))[0]
            entries.append(entry)
    return entries


def figure_path(out: Path, path: Path, taken: set[Path], inputs: set[Path]) -> Path:
    """``<out>/<stem>.png``; ``<stem>_<suffix>.png`` when that name is taken by another photo of
    this run or is one of the input photos themselves (never overwritten)."""
    candidates = [out / f"{path.stem}.png", out / f"{path.stem}_{path.suffix.lstrip('.')}.png"]
    candidates += [out / f"{path.stem}_{i}.png" for i in range(2, len(taken) + 3)]
    return next(c for c in candidates if c not in taken and c.resolve() not in inputs)


# ------------------------------------------------------------------------------------------------
# The function the command and the notebooks call
# ------------------------------------------------------------------------------------------------

def predict(images, runs: str | Path = "runs", stages=None, score_thresh: float = 0.5,
            device: str = "auto", out: str | Path | None = None, data_root: str | Path = "data",
            expect_classes=None, warmup: int = 1, dpi: int = DPI,
            verbose: bool = True) -> list[PhotoResult]:
    """Every chosen run on every image; one ``PhotoResult`` per image read.

    images: a file or folder, or a list of them (``list_images``). runs, stages: which runs
    (``choose_runs``). score_thresh: the detections kept, drawn and written. out: a folder for
    ``<stem>.png`` and ``detections.json``, or None to write nothing (``figure_for`` draws a
    result). data_root: where Fast R-CNN's selective-search cache lives. expect_classes: the class
    names the runs should know; a run trained on others is named in one line (and still run).
    warmup: untimed calls of each run on the first photo before its timed one. dpi: the
    figures' resolution. verbose: False prints only what went wrong (skipped images, classes).
    """
    image_files = list_images(images)
    if not image_files:
        raise DatasetError(f"no images in {images}")
    device = choose_device(device)
    loaded = choose_runs(runs, stages, device, data_root, verbose)
    for line in check_classes(loaded, expect_classes):
        print(line)
    inputs = {f.resolve() for f in image_files}
    out = Path(out) if out is not None else None
    results, entries, skipped, taken = [], [], [], set()
    t_start = time.perf_counter()
    for path in image_files:
        try:
            photo = read_photo(path)
        except DatasetError as e:
            skipped.append(path)
            print(f"[predict] skipped {e}")
            continue
        if warmup and not results:  # the first call of a model pays one-off costs
            for run in loaded:
                for _ in range(warmup):
                    detect(run, photo, score_thresh, device)
        result = PhotoResult(path, len(results) + 1, photo.shape[:2], score_thresh,
                             [detect(run, photo, score_thresh, device) for run in loaded])
        results.append(result)
        found = ", ".join(f"{r.title} {len(r.boxes)}" for r in result.stages)
        if out is not None:
            entries += coco_results(result)
            target = figure_path(out, path, taken, inputs)
            taken.add(target)
            files.save_figure(figure_for(result, photo), target, dpi=dpi)
            print(f"[predict] {path} -> {target}: detections {found}")
        elif verbose:
            print(f"[predict] {path}: detections {found}")
    if out is not None:
        files.write_json(out / DETECTIONS, entries, indent=None)  # as the runs' detections.json
        print(f"[predict] wrote {out / DETECTIONS}: {len(entries)} detections of "
              f"{len(results)} images (COCO results format)")
    if verbose or skipped:
        print(summary(results, skipped, time.perf_counter() - t_start, device))
    return results


def summary(results: list[PhotoResult], skipped: list[Path], seconds: float, device) -> str:
    """The last lines: images done (and skipped), and each stage's mean ms per image."""
    lines = []
    if skipped:
        lines.append(f"[predict] skipped {len(skipped)} unreadable image"
                     f"{'' if len(skipped) == 1 else 's'}: {', '.join(map(str, skipped))}")
    n = len(results)
    parts = []
    for i, r in enumerate(results[0].stages if results else []):
        proposals = np.mean([res.stages[i].ms_proposals for res in results])
        network = np.mean([res.stages[i].ms_network for res in results])
        parts.append(f"{r.title} {proposals:.0f} + {network:.0f}")
    lines.append(f"[predict] {n} image{'' if n == 1 else 's'} done in {seconds:.1f} s on "
                 f"{torch.device(device).type}; mean ms per image, proposals + network: "
                 + ("; ".join(parts) or "none"))
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# The command
# ------------------------------------------------------------------------------------------------

def build_parser():
    parser = command_parser("python -m stages.predict", __doc__)
    parser.add_argument("images", nargs="+", metavar="IMAGE_OR_FOLDER",
                        help="image files, or folders of them (not their sub-folders)")
    parser.add_argument("--runs", default="runs", metavar="DIR",
                        help="the folder of the trained runs, <runs>/<stage>/checkpoint.pt "
                             "(default: runs, where the stage commands and compare write them)")
    parser.add_argument("--stages", nargs="+", choices=STAGES, metavar="STAGE",
                        help=f"which runs, in this order: {', '.join(STAGES)} (default: every one "
                             f"under --runs)")
    parser.add_argument("--out", default="predictions", metavar="DIR",
                        help="folder for <stem>.png per image and detections.json "
                             "(default: predictions)")
    parser.add_argument("--score-thresh", type=float, default=0.5, metavar="N",
                        help="the detections drawn and written score at least this (default: 0.5)")
    parser.add_argument("--device", choices=DEVICES, default="auto",
                        help="auto: a CUDA GPU when there is one (default: auto)")
    parser.add_argument("--dpi", type=int, default=DPI, metavar="N",
                        help=f"resolution of the figures (default: {DPI}, for a projector)")
    parser.add_argument("--data-root", default="data", metavar="DIR",
                        help="where Fast R-CNN's selective-search cache lives, "
                             "<data-root>/proposals (default: data)")
    return parser


def main(argv: list[str] | None = None) -> list[PhotoResult]:
    args = build_parser().parse_args(argv)
    try:
        device = choose_device(args.device)
    except RuntimeError as e:  # --device cuda without a GPU
        raise SystemExit(f"error: {e}") from None
    try:
        results = predict(args.images, args.runs, args.stages, args.score_thresh, str(device),
                          args.out, args.data_root, dpi=args.dpi)
    except (CheckpointError, DatasetError) as e:  # a run to train (a line each), no image at all
        raise SystemExit("\n".join(f"error: {line}" for line in str(e).splitlines())) from None
    except (*USER_ERRORS, ValueError) as e:  # a run that cannot be rebuilt here, one line
        raise SystemExit(f"error: {str(e).splitlines()[0]}") from None
    if not results:  # every image skipped (each named above): nothing was done
        raise SystemExit("error: none of the images could be read (see the lines above)")
    return results


if __name__ == "__main__":
    main()
