"""Distillation limited to light levels: several --distill-rates ranges, old single-pair configs."""
from types import SimpleNamespace

import pytest
import torch

from ssml_stream.errors import ConfigError
from ssml_stream.train.cli import build_parser, config_from_args
from ssml_stream.train.loop import Trainer, rate_ranges


def test_rate_ranges_reads_one_pair_and_several():
    assert rate_ranges((0.08, 0.7)) == [(0.08, 0.7)]                       # configs written before
    assert rate_ranges(((0.0, 0.08), (0.7, 1.0))) == [(0.0, 0.08), (0.7, 1.0)]
    assert rate_ranges([[0, 0.08], [0.7, 1]]) == [(0.0, 0.08), (0.7, 1.0)]  # as JSON gives them back


def test_cli_collects_repeated_ranges_and_refuses_bad_ones():
    argv = ["d", "--distill-from", "ssml-full", "--distill-rates", "0,0.08", "--distill-rates", "0.7,1"]
    cfg = config_from_args(build_parser().parse_args(argv), argv)
    assert cfg.distill_rates == ((0.0, 0.08), (0.7, 1.0))
    argv = ["d", "--distill-rates", "0.7"]
    with pytest.raises(ConfigError, match="LO,HI"):
        config_from_args(build_parser().parse_args(argv), argv)


def test_mask_selects_crops_in_any_range():
    rates = [0.02, 0.3, 0.9, 0.08]
    x = torch.stack([torch.full((41, 8, 8), r) for r in rates])
    fake = SimpleNamespace(cfg=SimpleNamespace(distill_rates=((0.0, 0.08), (0.7, 1.0))))
    mask = Trainer._distill_mask(fake, x)
    assert mask.shape == (4, 1, 1, 1) and mask.view(-1).tolist() == [1.0, 0.0, 1.0, 1.0]
    assert Trainer._distill_mask(SimpleNamespace(cfg=SimpleNamespace(distill_rates=None)), x) is None
