"""``python -m stages``: list the stages and the commands that run them."""

import importlib.util

from stages import STAGES, __version__


def available(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def main() -> None:
    print(f"R-CNN Stages {__version__}: object detection from R-CNN to Mask R-CNN, "
          f"one runnable stage at a time\n")
    for i, (module, paper, idea) in enumerate(STAGES, 1):
        status = "" if available(module) else "   (not built yet)"
        print(f"  {i}. python -m {module:<20} {paper}{status}")
        print(f"     {'':<30}{idea}")
    print("\nShared tools:")
    tools = [("stages.data.synthetic", "generate the built-in shapes dataset"),
             ("stages.figures.dataset_preview", "the built-in dataset's first images with their ground truth, one PNG"),
             ("stages.compare", "all stages on the same data: one table, one plot (README's main job)"),
             ("stages.predict", "every trained stage on your own photos, side by side"),
             ("stages.errors", "TIDE's error types for a run, or any COCO results file"),
             ("stages.torchvision.peers", "torchvision's Faster / Mask R-CNN on our backbone (benchmark peers)"),
             ("stages.torchvision.finetune", "torchvision's fine-tuning tutorial: maskrcnn_resnet50_fpn on our data"),
             ("stages.figures.gallery", "every lecture figure as PNG into one folder")]
    for module, what in tools:
        status = "" if available(module) else "   (not built yet)"
        print(f"  python -m {module:<31} {what}{status}")
    print("\nEvery stage command takes --data, --preset, --epochs/--time-budget/--steps, --seed,")
    print("--device, --out, --resume, --eval-only and --overwrite; add --help to any command for")
    print("its own options.")


if __name__ == "__main__":
    main()
