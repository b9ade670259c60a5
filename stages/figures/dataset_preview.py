"""``python -m stages.figures.dataset_preview``: the built-in dataset's first images with their
ground truth, as one PNG grid (the dataset is generated first where it is missing)."""

from __future__ import annotations

from pathlib import Path

from stages.data.datasets import CocoDataset
from stages.data.synthetic import add_generation_args, generated_folder
from stages.figures.draw import preview_grid
from stages.flags import command_parser


def main(argv: list[str] | None = None) -> Path:
    """Generate the built-in dataset where it is missing and save a preview grid of it."""
    parser = command_parser("python -m stages.figures.dataset_preview", main.__doc__)
    add_generation_args(parser)
    parser.add_argument("--preview", default=None,
                        help="where to save the preview grid (default: <dataset folder>/preview.png)")
    args = parser.parse_args(argv)
    folder = generated_folder(args)
    preview = Path(args.preview) if args.preview else folder / "preview.png"
    preview_grid(CocoDataset(folder / "train.json", folder / "images"), preview, n=16)
    print(f"preview grid saved to {preview}")
    return preview


if __name__ == "__main__":
    main()
