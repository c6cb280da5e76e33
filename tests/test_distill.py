"""Distillation limited to light levels: several teachers, each with its own rate ranges; configs from
before (one teacher, one pair or one list of ranges) still read the same."""
from types import SimpleNamespace

import pytest
import torch

from ssml_stream.errors import ConfigError
from ssml_stream.train.cli import build_parser, config_from_args
from ssml_stream.train.loop import Trainer, crops_in_ranges, teacher_plan


def test_teacher_plan_reads_old_and_new_configs():
    assert teacher_plan(None, None) == []
    assert teacher_plan("full.pt", None) == [("full.pt", None)]
    assert teacher_plan("full.pt", (0.08, 0.7)) == [("full.pt", [(0.08, 0.7)])]          # one pair
    assert teacher_plan("full.pt", [[0, 0.08], [0.7, 1]]) == [("full.pt", [(0.0, 0.08), (0.7, 1.0)])]  # JSON
    two = teacher_plan(("full.pt", "rt.pt"), (((0, 0.08), (0.7, 1)), ((0.08, 0.7),)))
    assert two == [("full.pt", [(0.0, 0.08), (0.7, 1.0)]), ("rt.pt", [(0.08, 0.7)])]
    with pytest.raises(ConfigError, match="one set per teacher"):
        teacher_plan(("a", "b"), (((0, 1),),))


def test_cli_pairs_each_teacher_with_its_ranges_and_refuses_bad_ones():
    argv = ["d", "--distill-from", "ssml-full", "--distill-rates", "0,0.08;0.7,1",
            "--distill-from", "rt.pt", "--distill-rates", "0.08,0.7"]
    cfg = config_from_args(build_parser().parse_args(argv), argv)
    assert cfg.distill_from == ("ssml-full", "rt.pt")
    assert cfg.distill_rates == (((0.0, 0.08), (0.7, 1.0)), ((0.08, 0.7),))
    for bad in (["--distill-from", "a", "--distill-rates", "0.7"],
                ["--distill-from", "a", "--distill-rates", "0,1", "--distill-rates", "0,1"]):
        argv = ["d", *bad]
        with pytest.raises(ConfigError, match="distill-rates"):
            config_from_args(build_parser().parse_args(argv), argv)


class Constant(torch.nn.Module):
    def __init__(self, value):
        super().__init__()
        self.value = value

    def forward(self, x):
        return torch.full((x.shape[0], 1, *x.shape[2:]), self.value)


def test_each_crop_is_taught_by_the_first_teacher_that_takes_it():
    rates = [0.02, 0.3, 0.9, 0.08]
    x = torch.stack([torch.full((41, 8, 8), r) for r in rates])
    assert crops_in_ranges(torch.tensor(rates), [(0, 0.08), (0.7, 1)]).tolist() == [True, False, True, True]
    fake = SimpleNamespace(autocast=lambda: torch.autocast("cpu", enabled=False),
                           teachers=[(Constant(1.0), [(0.0, 0.08), (0.7, 1.0)]), (Constant(2.0), None)])
    none_free = torch.zeros(4, dtype=torch.bool)
    out, mask = Trainer._teach(fake, x, torch.zeros(4, 1, 8, 8), none_free)
    assert mask.view(-1).tolist() == [1.0, 1.0, 1.0, 1.0]
    assert out[:, 0, 0, 0].tolist() == [1.0, 2.0, 1.0, 1.0]
    fake.teachers = [(Constant(1.0), [(0.0, 0.08)])]
    out, mask = Trainer._teach(fake, x, torch.zeros(4, 1, 8, 8), none_free)
    assert mask.view(-1).tolist() == [1.0, 0.0, 0.0, 1.0] and out[1].abs().max() == 0
    # a teacher-free crop (hard world clip) is taught by no teacher, whatever its rate
    out, mask = Trainer._teach(fake, x, torch.zeros(4, 1, 8, 8), torch.tensor([True, False, False, False]))
    assert mask.view(-1).tolist() == [0.0, 0.0, 0.0, 1.0] and out[0].abs().max() == 0


def test_bsn_teaches_teacher_free_crops_with_the_distillation_weight():
    """On a teacher-free crop the NBSN is pulled to the (detached) BSN with the teachers' weight; on the
    other crops that term is zero."""
    from ssml_stream.train.loop import mutual_loss

    bsn = torch.full((2, 1, 4, 4), 0.5, requires_grad=True)
    nbsn = torch.full((2, 1, 4, 4), 0.3, requires_grad=True)
    label = torch.full((2, 1, 4, 4), 0.5)
    free = torch.tensor([1.0, 0.0]).view(-1, 1, 1, 1)
    terms = mutual_loss(bsn, nbsn, label, 0.01, torch.full_like(nbsn, 0.3), 2.0, None,
                        torch.tensor([0.0, 1.0]).view(-1, 1, 1, 1), free)
    assert abs(terms["loss_bsn_teach"].item() - 0.5 * 0.2 ** 2) < 1e-6   # half the crops, error 0.2
    terms["loss_bsn_teach"].backward()
    assert bsn.grad is None and nbsn.grad[1].abs().max() == 0 and nbsn.grad[0].abs().min() > 0
