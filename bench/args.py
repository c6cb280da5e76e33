"""Options the `ssml-bench` benchmarks share, parsed like every console script: a bad value is one line
on stderr and exit 2."""
from __future__ import annotations

import argparse

from ..cli_common import OneLineParser, int_at_least, positive_int


def bench_parser(name: str, doc: str, *examples: str) -> OneLineParser:
    """The parser of `ssml-bench NAME`: `doc` (the benchmark's docstring) as the description, the example
    command lines after the options, and `--json PATH` (default bench_results/NAME.json)."""
    p = OneLineParser(prog=f"ssml-bench {name}", description=doc, formatter_class=argparse.RawDescriptionHelpFormatter,
                      epilog="examples:\n" + "\n".join(f"  {e}" for e in examples))
    p.add_argument("--json", default=f"bench_results/{name}.json", help="result file (default %(default)s)")
    return p


def add_threads(p: argparse.ArgumentParser, default_help: str, **kwargs) -> None:
    """`--threads N` (N >= 1); kwargs such as nargs="+" and a list default for a sweep over thread counts."""
    p.add_argument("--threads", type=positive_int, metavar="N", help=f"torch threads (default: {default_help})",
                   **kwargs)


def _torch_device(text: str) -> str:
    if text == "cuda":
        import torch
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError("no CUDA device is available to torch")
    return text


def add_device(p: argparse.ArgumentParser) -> None:
    """`--device cpu|cuda` (default cpu); cuda is refused while parsing when torch sees no CUDA device."""
    p.add_argument("--device", type=_torch_device, default="cpu", choices=["cpu", "cuda"],
                   help="where torch runs (default cpu)")


def frame_side(minimum: int = 4, multiple: int = 1):
    """An argparse type: a frame height or width, a whole number >= minimum and a multiple of `multiple`."""
    at_least = int_at_least(minimum)

    def parse(text: str) -> int:
        value = at_least(text)
        if value % multiple:
            raise argparse.ArgumentTypeError(f"expected a multiple of {multiple}, got {value}")
        return value
    return parse


def add_frame_size(p: argparse.ArgumentParser, minimum: int = 4, width_multiple: int = 1) -> None:
    """`--height` and `--width` of the frames (default 250 x 400)."""
    p.add_argument("--height", type=frame_side(minimum), default=250, help="frame height (default 250)")
    p.add_argument("--width", type=frame_side(minimum, width_multiple), default=400, help="frame width (default 400)")


def frame_size(minimum: int = 4, width_multiple: int = 1):
    """An argparse type: 'HxW' -> (H, W), each side checked as by `frame_side`."""
    height, width = frame_side(minimum), frame_side(minimum, width_multiple)

    def parse(text: str) -> tuple[int, int]:
        sides = text.lower().split("x")
        if len(sides) != 2:
            raise argparse.ArgumentTypeError(f"expected HxW, e.g. 250x400, got {text!r}")
        return height(sides[0]), width(sides[1])
    return parse


def odd_positive(text: str) -> int:
    """An argparse type: an odd whole number >= 1 (a window length with a centre frame)."""
    value = positive_int(text)
    if value % 2 == 0:
        raise argparse.ArgumentTypeError(f"expected an odd number, got {value}")
    return value
