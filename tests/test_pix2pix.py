"""pix2pix (paper Section III.C): networks at the reference widths, image metrics, the schedule of pix2pix's
own learning rate, the training loop on real facades, its configuration checks and its step multiplier."""

import math

import pytest
import torch

from lossdecay_lib import schedules as S
from lossdecay_lib.metrics import ImageScores, image_scores
from lossdecay_lib.runs import RunStore
from lossdecay_lib.training import Pix2PixConfig, load_samples, train_pix2pix
from lossdecay_lib.training.pix2pix import build_pix2pix_networks

DATA = None  # $LOSSDECAY_DATA (the tests run with it set to the shared data)


def tiny(**changes):
    """2 real facades pairs at 64x64, U-Net with 6 downsamplings, 1 epoch."""
    base = dict(profile="smoke", train_images=2, test_images=2, image_size=64, num_downs=6, ngf=4, ndf=4, epochs=1,
                sample_images=2)
    base.update(changes)
    return Pix2PixConfig(**base)


# -- networks -----------------------------------------------------------------------------------------

def test_networks_at_reference_width_have_the_reference_parameter_counts():
    # pytorch-CycleGAN-and-pix2pix, --model pix2pix (unet_256, basic D with 3 + 3 input channels, batch norm),
    # counted by hand from its layers: the G it prints as "54.414 M", the D as "2.769 M".
    generator, discriminator = build_pix2pix_networks(tiny(ngf=64, ndf=64, image_size=256, num_downs=8))
    n_g = sum(p.numel() for p in generator.parameters())
    n_d = sum(p.numel() for p in discriminator.parameters())
    assert (n_g, n_d) == (54_413_955, 2_768_705)
    assert ("%.3f M" % (n_g / 1e6), "%.3f M" % (n_d / 1e6)) == ("54.414 M", "2.769 M")
    assert discriminator.model[0].in_channels == 6  # conditioned on the input image


# -- image metrics ------------------------------------------------------------------------------------

def test_identical_images_score_perfectly():
    torch.manual_seed(0)
    real = torch.rand(3, 3, 32, 32) * 2 - 1
    s = image_scores(real.clone(), real)
    assert torch.all(s["l1"] == 0)
    assert torch.all(torch.isinf(s["psnr"])) and torch.all(s["psnr"] > 0)
    assert torch.allclose(s["ssim"], torch.ones(3), atol=1e-6)


def test_constant_offset_gives_the_exact_psnr():
    torch.manual_seed(0)
    real = torch.rand(2, 3, 32, 32) * 1.2 - 0.8  # in [-0.8, 0.4]: no clipping after the offsets below
    fake = real + torch.tensor([0.2, 0.02]).view(2, 1, 1, 1)  # 0.1 and 0.01 in [0, 1] units
    s = image_scores(fake, real)
    # MSE in [0, 1] units = offset^2, so PSNR = -20 log10(offset): 20 dB and 40 dB
    assert s["psnr"].tolist() == pytest.approx([20.0, 40.0], abs=1e-3)
    assert s["l1"].tolist() == pytest.approx([0.2, 0.02], abs=1e-6)
    assert float(s["ssim"].max()) < 1.0
    acc = ImageScores()
    acc.update(fake[:1], real[:1])
    acc.update(fake[1:], real[1:])
    r = acc.result()
    assert r["images"] == 2
    assert r["psnr"] == pytest.approx(30.0, abs=1e-3) and r["psnr_std"] == pytest.approx(math.sqrt(200), abs=1e-2)
    assert r["l1"] == pytest.approx(0.11, abs=1e-6)


def test_image_scores_refuse_mismatched_shapes():
    with pytest.raises(ValueError, match="one shape"):
        image_scores(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 9))


# -- pix2pix's own learning-rate schedule --------------------------------------------------------------

def test_constant_then_linear():
    s = S.constant_then_linear(0.5)
    assert [s.at(e, 10, steps_per_epoch=10) for e in (0, 2, 4.9, 5, 7.5, 10)] == pytest.approx([1, 1, 1, 1, 0.5, 0])
    assert S.constant_then_linear(start_fraction=0.0).at(5, 10, 10) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="start_fraction"):
        S.constant_then_linear(1.0)


# -- configuration --------------------------------------------------------------------------------------

@pytest.mark.parametrize("changes, message", [
    (dict(dataset="cityscapes"), "valid datasets: facades, maps"),
    (dict(gan_loss="wgan"), "valid GAN losses: lsgan, vanilla"),
    (dict(weight_place="logits"), "one of: loss, grad, lr"),
    (dict(profile="laptop"), "valid profiles: smoke, quick, cpu, gpu, paper, auto"),
    (dict(image_size=100), "divisible by 2\\*\\*num_downs = 64"),
    (dict(betas=(0.5, 1.5)), "betas must be two numbers in \\[0, 1\\)"),
    (dict(train_images=0), "train_images must be a positive integer or None"),
    (dict(batch_size=4), "batch_size 4 is larger than the 2 training images"),
])
def test_bad_config_values_name_the_valid_choices(changes, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        train_pix2pix(tiny(**changes), store=RunStore(tmp_path), progress=False)
    assert not list(tmp_path.iterdir())  # refused before any work


def test_negative_weights_need_allow_negative(tmp_path):
    # the authors' code weight over their 200-epoch run: <= 0 for the second half, here on a 2-epoch run
    authors = S.stretched(S.authors_code_weight(), epochs=200)
    with pytest.raises(ValueError, match="allow_negative=True"):
        train_pix2pix(tiny(epochs=2, weight=authors), store=RunStore(tmp_path), progress=False)
    record = train_pix2pix(tiny(epochs=2, weight=authors, allow_negative=True), store=RunStore(tmp_path),
                           progress=False)
    assert record["status"] == "finished" and record["negative_weights"] and record["lowest_weight"] < 0
    # in the second half the generator's step goes uphill: the measured multiplier is negative
    assert record["epochs"][1]["weight_mean"] < 0 and record["epochs"][1]["step_multiplier"] < 0


# -- the training loop ----------------------------------------------------------------------------------

def test_tiny_real_facades_run_finishes_and_reloads_by_key(tmp_path):
    store = RunStore(tmp_path)
    record = train_pix2pix(tiny(label="tiny"), store=store, progress=False)
    assert record["status"] == "finished" and record["kind"] == "pix2pix"
    assert record["data"]["train_images"] == 2 and record["data"]["crop_size"] == 64
    assert record["data"]["direction"] == "BtoA"  # facades: labels -> photo
    (epoch,) = record["epochs"]
    for name in ("d_loss", "g_gan_loss", "g_l1_loss", "g_l1_loss_weighted", "weight_mean", "lr_mean",
                 "step_multiplier", "test_l1", "test_psnr", "test_ssim"):
        assert math.isfinite(epoch[name]), name
    assert epoch["g_l1_loss_weighted"] == pytest.approx(100 * epoch["g_l1_loss"])  # lambda 100, weight 1
    assert record["final_test_psnr"] == epoch["test_psnr"] and 0 < record["final_test_ssim"] < 1
    samples = load_samples(record, store)
    assert samples["output"].dtype == torch.uint8 and samples["output"].shape == (2, 3, 64, 64)
    assert torch.equal(samples["indices"], torch.tensor([0, 1]))
    assert not list(tmp_path.glob("*.ckpt.pt")) and not list(tmp_path.glob(".partial-*"))
    # the same configuration is loaded, not trained: a data root that does not exist is never read
    again = train_pix2pix(tiny(label="tiny again"), data_root=tmp_path / "nowhere", store=store, progress=False)
    assert again["key"] == record["key"] and again["epochs"] == record["epochs"] and again["label"] == "tiny again"


def test_step_multiplier_is_one_for_plain_adam_and_the_lr_factor_for_lr_decay(tmp_path):
    store = RunStore(tmp_path)
    plain = train_pix2pix(tiny(epochs=2), store=store, progress=False)
    assert [e["step_multiplier"] for e in plain["epochs"]] == pytest.approx([1.0, 1.0], abs=1e-4)
    on_lr = train_pix2pix(tiny(epochs=2, weight=S.linear_decay(2.0), weight_place="lr"), store=store,
                          progress=False)
    for e in on_lr["epochs"]:  # the step is exactly w times Adam's unweighted step
        assert e["step_multiplier"] == pytest.approx(e["weight_mean"], rel=1e-3)
        assert e["step_multiplier_predicted"] == pytest.approx(e["weight_mean"], rel=1e-9)
    halved = train_pix2pix(tiny(epochs=2, weight=S.constant(0.5)), store=store, progress=False)
    # a constant loss weight cancels out of Adam's step (up to eps): the multiplier is 1, not 0.5
    assert [e["step_multiplier"] for e in halved["epochs"]] == pytest.approx([1.0, 1.0], abs=1e-3)
    assert halved["epochs"][0]["g_loss_weighted"] == pytest.approx(0.5 * halved["epochs"][0]["g_loss"])


def test_an_interrupted_run_resumes_to_the_record_of_an_uninterrupted_one(tmp_path, monkeypatch):
    from lossdecay_lib.training import loop

    cfg = tiny(epochs=2, weight=S.linear_decay(2.0))
    original = loop.RecordedRun.end_epoch

    class Interrupted(Exception):
        pass

    def end_epoch_then_stop(self, *args, **kwargs):
        original(self, *args, **kwargs)  # the checkpoint after epoch 0 is written, then the run "dies"
        raise Interrupted

    monkeypatch.setattr(loop.RecordedRun, "end_epoch", end_epoch_then_stop)
    with pytest.raises(Interrupted):
        train_pix2pix(cfg, store=RunStore(tmp_path / "killed"), progress=False)
    monkeypatch.undo()
    assert len(list((tmp_path / "killed").glob("*.ckpt.pt"))) == 1
    resumed = train_pix2pix(cfg, store=RunStore(tmp_path / "killed"), progress=False)
    fresh = train_pix2pix(cfg, store=RunStore(tmp_path / "fresh"), progress=False)

    def without_times(record):
        return [{k: v for k, v in e.items() if k != "seconds"} for e in record["epochs"]]

    assert without_times(resumed) == without_times(fresh)
    assert torch.equal(load_samples(resumed, RunStore(tmp_path / "killed"))["output"],
                       load_samples(fresh, RunStore(tmp_path / "fresh"))["output"])
    assert not list((tmp_path / "killed").glob("*.ckpt.pt"))
