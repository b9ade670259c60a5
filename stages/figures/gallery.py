"""``python -m stages.figures``: the lecture figures, one PNG file each, for slides.

    python -m stages.figures --out figures/                       every figure that can be made
    python -m stages.figures --out figures/ --only anchors rpn    two of them
    python -m stages.figures --list                               the figures and what each needs
    python -m stages.figures --data coco:ANN.json:IMAGES          drawn on your own data

Each figure shows one idea of one paper, and is made by one function of its stage's module
(``stages.figures.rcnn``, ``.fast_rcnn``, ``.faster_rcnn``, ``.mask_rcnn``; the architecture
diagrams by ``.diagrams``), in lecture order:

    name            file (.png)                             idea (paper, sec.)          needs
    proposals       01_sliding_windows_vs_selective_search  where to look, cost (R-CNN 2.1) -
    warped_regions  02_warped_regions                       crop + warp (R-CNN App. A)  -
    hard_negatives  03_hard_negatives                       hard negatives (R-CNN 2.3)  (rcnn)
    roi_pool        04_roi_pooling_grid                     RoI pooling (Fast 2.1)      -
    spp             05_spp_bins                             pyramid bins (SPP-net 2.2)  -
    anchors         06_anchors                              anchors (Faster 3.1.1)      -
    rpn             07_rpn_objectness_and_proposals         RPN + NMS (Faster 3.1, 3.3) faster_rcnn
    roi_align       08_roi_pool_vs_roi_align                RoIAlign (Mask Fig. 3)      -
    fpn             09_fpn_levels                           pyramid levels (FPN Eq. 1)  mask_rcnn --fpn
    masks           10_predicted_masks                      masks (Mask R-CNN 3)        mask_rcnn
    mask_path       11_mask_path                            mask branch (Mask 3, Fig. 4) mask_rcnn
    precision_recall 12_precision_recall                    AP = area under PR (COCO)   mask_rcnn
    comparison      13_comparison                           all four generations        compare
    real_photos     14_real_photos                          every stage on a photo      photo runs
    error_types     15_error_types                          TIDE's error types (TIDE)   a run
    rcnn_diagram    16_rcnn_diagram                         R-CNN's process (R-CNN 2.2) -
    fast_diagram    17_fast_rcnn_diagram                    Fast R-CNN (Fast Fig. 1)    -
    faster_diagram  18_faster_rcnn_diagram                  the RPN (Faster Fig. 2, 3)  -
    mask_diagram    19_mask_rcnn_diagram                    box + mask heads (Mask Fig. 4) -
    fpn_diagram     20_fpn_diagram                          top-down path (FPN Fig. 3)  -
    selective_search 21_selective_search_steps              grouping (Uijlings 3.1)     -

What a figure needs. The figures of geometry (proposals, warps, pooling bins, anchors) draw one
validation image of ``--data`` (``--image`` picks which) and always render; so do the
architecture diagrams (16-20), whose every box shows the shape its module gave in one forward pass
of the stage's model (untrained, default config) on that image, and the selective-search steps
(21), the package's own segmentation and merges on it. The figures of what a network *learned*
read a trained run under ``--runs`` (default ``runs/``, each stage's default output folder):
``<runs>/faster_rcnn/checkpoint.pt``, ``<runs>/mask_rcnn/checkpoint.pt``, ``<runs>/comparison.json``
(``python -m stages.compare`` writes all of them there, so after the README's main command every
figure renders); without it the figure is skipped with a line that
names the command to run. The real-photo figure draws ``python -m stages.predict``'s figure for one
photo, ``--photo`` (in the gallery a Penn-Fudan validation photo), from the runs trained on such
photos under ``--photo-runs`` (default ``runs/pennfudan``, where ``python -m stages.compare --data
pennfudan:DIR --out runs/pennfudan`` writes them). Each "wrote" line names the run (checkpoint,
steps, seconds) it drew. The FPN figure needs a run trained with ``--fpn`` (``<runs>/mask_rcnn_fpn``,
or ``<runs>/mask_rcnn`` when that one has the pyramid): its trained maps and its RPN's proposals,
each pooled from the level FPN Eq. 1 assigns. The hard-negatives figure uses a run when there is
one and says in its title when there is not (the trained SVMs' scores from ``<runs>/rcnn``;
without them, the negatives nearest to an object, which is where hard negatives come from).

Checkpoints are read the way the stages read them (``stages.training.checkpoint.load_checkpoint``: refused
when written by another stage or for other classes) and rebuilt with the stage's own model
builder from the config they saved. Proposals come from the selective-search cache that stages 1
and 2 share (``<data-root>/proposals``). Files are written atomically (``stages.files``) at 150 dpi,
with fonts sized for a projector; at the end the command lists what it wrote and what it skipped.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import matplotlib
from matplotlib.figure import Figure
from PIL import Image

from stages.figures.common import DPI, FONTS, PHOTO_RUNS, Inputs, Skip
from stages.figures.diagrams import (fig_fast_diagram, fig_faster_diagram, fig_fpn_diagram,
                                     fig_mask_diagram, fig_rcnn_diagram)
from stages.figures.fast_rcnn import fig_roi_pool, fig_spp
from stages.figures.evaluation import fig_error_types, fig_precision_recall
from stages.figures.faster_rcnn import fig_anchors, fig_rpn
from stages.figures.mask_rcnn import fig_fpn, fig_mask_path, fig_masks, fig_roi_align
from stages.figures.rcnn import (fig_hard_negatives, fig_proposals, fig_selective_search,
                                 fig_warped_regions)
from stages import files
from stages.flags import command_parser
from stages.training.engine import CHECKPOINT


# ------------------------------------------------------------------------------------------------
# All four: the comparison
# ------------------------------------------------------------------------------------------------

def fig_comparison(src: Inputs) -> Figure | Path:
    """``python -m stages.compare``'s plot, re-rendered from its comparison.json (at 150 dpi, where
    compare writes 120); its comparison.png as it is when the JSON cannot be read."""
    from stages import compare  # its comparison.json: load_comparison, describe
    from stages.figures.comparison import plot_comparison

    folder = src.runs  # compare's default --out: the stages' runs and comparison.json together
    json_path, png_path = folder / "comparison.json", folder / "comparison.png"
    if json_path.is_file():
        try:
            rows, settings = compare.load_comparison(json_path)
            src.used.append(f"{json_path} ({len(rows)} rows)")
            return plot_comparison(rows, compare.describe(settings))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            if not png_path.is_file():
                raise Skip(f"{json_path} cannot be read ({type(e).__name__}: {e}); run "
                           f"`{src.command('stages.compare', folder)}` again") from None
            print(f"[figures] comparison: {json_path} cannot be read ({e}); copying {png_path}")
    if png_path.is_file():
        src.used.append(str(png_path))
        return png_path
    raise Skip(f"no comparison in {folder}: run `{src.command('stages.compare', folder)}` "
               f"(trains and evaluates all four stages)")


def fig_real_photos(src: Inputs) -> Figure:
    """``python -m stages.predict``'s figure for ``--photo``: every stage trained under
    ``--photo-runs``, one panel each, on the photo, with its proposals and times."""
    from stages.predict import figure_for, predict
    from stages.training.checkpoint import CheckpointError
    from stages.trained_run import STAGES

    runs = src.photo_runs
    train = (f"python -m stages.compare --data pennfudan:DIR --out {runs} (all four stages on "
             f"Penn-Fudan's photos; or one: python -m stages.mask_rcnn --data pennfudan:DIR "
             f"--out {runs / 'mask_rcnn'})")
    if src.photo is None:
        raise Skip(f"no --photo: run `python -m stages.figures --only real_photos --photo PHOTO "
                   f"--photo-runs {runs}` with a photo (the gallery's: a Penn-Fudan validation "
                   f"photo, PennFudanPed/PNGImages/FudanPed00065.png) and runs trained on such "
                   f"photos: {train}")
    if not any((runs / stage / CHECKPOINT).is_file() for stage in STAGES):
        raise Skip(f"no trained run under {runs}: run {train}")
    try:
        results = predict([src.photo], runs, device="cpu", data_root=src.data_root, verbose=False)
    except CheckpointError as e:
        raise Skip(str(e)) from None
    if not results:
        raise Skip(f"{src.photo}: cannot read the photo (the line above says why)")
    src.used.extend(stage.source for stage in results[0].stages)
    return figure_for(results[0])


# ------------------------------------------------------------------------------------------------
# The list of figures, and the command
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FigureSpec:
    name: str  # for --only
    filename: str
    make: Callable[[Inputs], Figure | Path]  # a figure to save, or an existing PNG to copy
    teaches: str
    needs: str | None = None  # a run it cannot do without (else skipped)
    uses: str | None = None  # a run it reads if present (else it says so in its title)
    fonts: dict = dataclasses.field(default_factory=lambda: dict(FONTS))  # matplotlib rcParams


FIGURES = (
    FigureSpec("proposals", "01_sliding_windows_vs_selective_search.png", fig_proposals,
               "R-CNN 2.1, 2.2: sliding windows vs selective search, counts, CNN ms per image"),
    FigureSpec("warped_regions", "02_warped_regions.png", fig_warped_regions,
               "R-CNN 2.1, App. A: proposals + context warped to the CNN input, fg/bg by IoU"),
    FigureSpec("hard_negatives", "03_hard_negatives.png", fig_hard_negatives,
               "R-CNN 2.3: the negatives the SVMs score highest", uses="rcnn"),
    FigureSpec("roi_pool", "04_roi_pooling_grid.png", fig_roi_pool,
               "Fast R-CNN 2.1: RoI pooling's 7 x 7 bins, rounded to cells"),
    FigureSpec("spp", "05_spp_bins.png", fig_spp,
               "SPP-net 2.2: 4x4 + 2x2 + 1x1 bins on a small and a large RoI"),
    FigureSpec("anchors", "06_anchors.png", fig_anchors,
               "Faster R-CNN 3.1.1: 3 x 3 anchors at a location, centres at the stride"),
    FigureSpec("rpn", "07_rpn_objectness_and_proposals.png", fig_rpn,
               "Faster R-CNN 3.1, 3.3: objectness map, proposals before/after NMS",
               needs="faster_rcnn"),
    FigureSpec("roi_align", "08_roi_pool_vs_roi_align.png", fig_roi_align,
               "Mask R-CNN 3, Fig. 3: RoIPool bins vs RoIAlign sample points"),
    FigureSpec("fpn", "09_fpn_levels.png", fig_fpn,
               "FPN 3, Eq. 1: trained pyramid maps P2-P5 and the RPN proposals each level pools",
               needs="mask_rcnn --fpn"),
    FigureSpec("masks", "10_predicted_masks.png", fig_masks,
               "Mask R-CNN 3: ground truth above the predicted masks, one colour per object",
               needs="mask_rcnn"),
    FigureSpec("mask_path", "11_mask_path.png", fig_mask_path,
               "Mask R-CNN 3, Fig. 4: 14 x 14 RoI features -> 28 x 28 mask -> pasted -> 0.5",
               needs="mask_rcnn"),
    FigureSpec("precision_recall", "12_precision_recall.png", fig_precision_recall,
               "COCO AP: the area under each class's precision-recall curve; mAP", needs="mask_rcnn"),
    # compare's plot places its legends and labels for matplotlib's default fonts: kept
    FigureSpec("comparison", "13_comparison.png", fig_comparison,
               "all four stages: AP against test time, where the time goes", needs="compare",
               fonts={}),
    FigureSpec("real_photos", "14_real_photos.png", fig_real_photos,
               "every trained stage on a photo: detections, proposals, ms (stages.predict)",
               needs="photo runs"),
    FigureSpec("error_types", "15_error_types.png", fig_error_types,
               "TIDE: one real detection of each error type, with its object and IoU",
               needs="a run"),
    # the architecture diagrams: each box labelled with a shape from one forward pass
    FigureSpec("rcnn_diagram", "16_rcnn_diagram.png", fig_rcnn_diagram,
               "R-CNN 2.2: proposals -> warp -> CNN -> SVMs, NMS, box regression, with shapes"),
    FigureSpec("fast_diagram", "17_fast_rcnn_diagram.png", fig_fast_diagram,
               "Fast R-CNN Fig. 1: image -> backbone -> RoI pooling -> fc -> cls + box, shapes"),
    FigureSpec("faster_diagram", "18_faster_rcnn_diagram.png", fig_faster_diagram,
               "Faster R-CNN Fig. 2-3: shared map -> RPN (A anchors) -> proposals -> head"),
    FigureSpec("mask_diagram", "19_mask_rcnn_diagram.png", fig_mask_diagram,
               "Mask R-CNN Fig. 4: RoIAlign -> box head; RoIAlign 14 -> convs -> K 28 x 28 masks"),
    FigureSpec("fpn_diagram", "20_fpn_diagram.png", fig_fpn_diagram,
               "FPN Fig. 3: C2..C5 -> lateral 1 x 1 -> + 2x up -> 3 x 3 -> P2..P6, shapes"),
    FigureSpec("selective_search", "21_selective_search_steps.png", fig_selective_search,
               "Uijlings 3.1: Felzenszwalb regions, merges by similarity, the proposals"),
)
BY_NAME = {spec.name: spec for spec in FIGURES}


def format_list() -> str:
    lines = [f"{'name':<15} {'file':<43} {'run':<13} what it shows"]
    for s in FIGURES:
        run = s.needs or (f"({s.uses})" if s.uses else "-")
        lines.append(f"{s.name:<15} {s.filename:<43} {run:<13} {s.teaches}")
    lines.append("run: the run under --runs the figure needs; (run): used if present, else said so "
                 "in the figure")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser("python -m stages.figures", __doc__)
    parser.add_argument("--out", default="figures", help="folder for the PNG files (default: figures)")
    parser.add_argument("--runs", default="runs",
                        help="folder of the trained runs, <runs>/<stage>/checkpoint.pt and "
                             "<runs>/comparison.json (default: runs, where compare writes them)")
    parser.add_argument("--data", default="synthetic",
                        help="synthetic | coco:ANN.json[:IMAGE_DIR] | pennfudan:DIR: the images "
                             "drawn (default: synthetic)")
    parser.add_argument("--data-root", default="data",
                        help="generated data and proposal caches (default: data)")
    parser.add_argument("--image", type=int, default=0,
                        help="which validation image to draw (default: 0)")
    parser.add_argument("--only", nargs="+", metavar="NAME", choices=list(BY_NAME),
                        help=f"render only these figures: {', '.join(BY_NAME)} (see --list)")
    parser.add_argument("--photo", default=None,
                        help="the photo of the real-photo figure (the gallery's: a Penn-Fudan "
                             "validation photo); none: that figure is skipped")
    parser.add_argument("--photo-runs", default=PHOTO_RUNS,
                        help=f"the runs trained on such photos, <photo-runs>/<stage>/checkpoint.pt "
                             f"(default: {PHOTO_RUNS})")
    parser.add_argument("--list", action="store_true", help="list the figures and exit")
    parser.add_argument("--dpi", type=int, default=DPI,
                        help=f"resolution of the PNG files (default: {DPI})")
    parser.add_argument("--palette", action="store_true",
                        help="256-colour PNGs, about 3x smaller: the committed gallery (docs/figures)")
    return parser


@dataclass
class Report:
    written: list[Path] = dataclasses.field(default_factory=list)
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)  # name -> why
    failed: dict[str, str] = dataclasses.field(default_factory=dict)  # name -> error
    sources: dict[str, list] = dataclasses.field(default_factory=dict)  # file -> runs it read


def render(spec: FigureSpec, src: Inputs, out: Path, dpi: int = DPI, palette: bool = False) -> Path:
    """Make one figure and write it to ``out / spec.filename`` (atomically); ``Skip`` passes up.
    ``palette``: a 256-colour PNG, about 3x smaller (the committed gallery, docs/figures)."""
    path = out / spec.filename
    with matplotlib.rc_context(spec.fonts):  # sizes are read when text is made and when drawn
        made = spec.make(src)
        if isinstance(made, Path):
            data = made.read_bytes()
        else:
            buffer = io.BytesIO()
            made.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
            data = buffer.getvalue()
    if palette:
        image = Image.open(io.BytesIO(data)).convert("RGB").quantize(colors=256)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", optimize=True)
        data = buffer.getvalue()
    return files.write_bytes(path, data)


def main(argv: list[str] | None = None) -> Report:
    args = build_parser().parse_args(argv)
    if args.list:
        print(format_list())
        return Report()
    chosen = [spec for spec in FIGURES if not args.only or spec.name in args.only]  # lecture order
    src = Inputs(args.data, args.data_root, args.runs, args.image, args.photo, args.photo_runs)
    if any(spec.name not in ("comparison", "real_photos") for spec in chosen):
        _ = src.val  # load the data now: a bad --data fails here, once, with one line
    out = Path(args.out)
    report = Report()
    for spec in chosen:
        t0 = time.perf_counter()
        src.used = []
        try:
            path = render(spec, src, out, args.dpi, args.palette)
        except Skip as why:
            report.skipped[spec.name] = str(why)
            print(f"[figures] skipped {spec.name}: {why}")
            continue
        except Exception as e:  # one broken figure must not cost the others
            report.failed[spec.name] = f"{type(e).__name__}: {e}"
            print(f"[figures] FAILED {spec.name}:")
            traceback.print_exc()
            continue
        report.written.append(path)
        report.sources[path.name] = list(src.used)
        origin = "; ".join(src.used) if src.used else f"no trained run: drawn from validation image {args.image} of {args.data}"
        print(f"[figures] wrote {path} ({time.perf_counter() - t0:.1f} s) from {origin}")

    print(f"\n[figures] {len(report.written)} written to {out}/"
          + "".join(f"\n  {p.name}" for p in report.written))
    if report.skipped:
        print(f"[figures] {len(report.skipped)} skipped:"
              + "".join(f"\n  {name}: {why}" for name, why in report.skipped.items()))
    if report.failed:
        print(f"[figures] {len(report.failed)} failed:"
              + "".join(f"\n  {name}: {err}" for name, err in report.failed.items()))
    return report


if __name__ == "__main__":
    if main().failed:
        raise SystemExit(1)
