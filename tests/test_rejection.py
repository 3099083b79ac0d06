"""Discriminator rejection sampling: the acceptance rule against its closed form, the sampler's output against an
exact distribution, and the GAN glue (seeded, shapes, labels, refusals)."""

import math

import pytest
import torch

from genlab import registry
from genlab.errors import ConfigError, GenlabError
from genlab.models.base import DataInfo
from genlab.models.gan_rejection import discriminator_logits, sample_with_rejection
from genlab.sampling.rejection import acceptance_logits, rejection_sample

# A four-valued proposal p_g and the target p_data; the ideal discriminator's logit is log p_data / p_g.
P_G = torch.tensor([0.4, 0.3, 0.2, 0.1])
P_DATA = torch.tensor([0.1, 0.2, 0.3, 0.4])


def four_valued_proposal(seed: int):
    generator = torch.Generator().manual_seed(seed)

    def propose(m: int):
        values = torch.multinomial(P_G, m, replacement=True, generator=generator)
        return values, torch.log(P_DATA / P_G)[values]

    return propose


def test_the_acceptance_logit_is_the_logit_of_exp_d_minus_d_max_and_finite_at_the_max():
    logits = torch.tensor([-12.0, -3.0, -0.5, 0.0, 1.5], dtype=torch.float64)
    scores = acceptance_logits(logits, max_logit=1.5, epsilon=1e-9)
    assert torch.isfinite(scores).all()
    torch.testing.assert_close(torch.sigmoid(scores[:-1]), torch.exp(logits[:-1] - 1.5), rtol=1e-6, atol=0.0)
    assert torch.sigmoid(scores[-1]) > 1 - 1e-6  # the best sample seen is always kept by the exact rule
    assert (scores.diff() > 0).all()  # a higher logit is never less likely to pass


def test_the_exact_rule_turns_the_proposal_into_the_data_distribution():
    values, facts = rejection_sample(four_valued_proposal(0), 40_000, gamma=0.0, burn_in=2_000, batch_size=4_000,
                                     generator=torch.Generator().manual_seed(1))
    frequencies = torch.bincount(values, minlength=4).double() / values.numel()
    standard_errors = (P_DATA * (1 - P_DATA) / values.numel()).sqrt().double()
    assert ((frequencies - P_DATA.double()).abs() < 4 * standard_errors).all(), frequencies
    # exp(D - D_M) accepts sum_x p_g(x) p_data(x) / p_g(x) / max ratio = 1 / 4 of the proposals
    assert facts["acceptance_rate"] == pytest.approx(0.25, abs=0.01) and facts["gamma"] == 0.0
    assert facts["max_logit"] == pytest.approx(math.log(4.0))


def test_the_papers_shift_keeps_fewer_and_favours_the_likelier_values():
    values, facts = rejection_sample(four_valued_proposal(2), 5_000, percentile=95.0, burn_in=2_000,
                                     generator=torch.Generator().manual_seed(3))
    frequencies = torch.bincount(values, minlength=4).double() / values.numel()
    assert (frequencies.diff() >= 0).all() and frequencies[3] > P_DATA[3]  # sharper than p_data itself
    assert facts["acceptance_rate"] < 0.25 and facts["gamma"] > 0
    # At the 0th percentile gamma is the lowest F, so every sample passes with probability >= 1/2.
    _, mildest = rejection_sample(four_valued_proposal(4), 5_000, percentile=0.0, burn_in=2_000,
                                  generator=torch.Generator().manual_seed(5))
    assert 0.5 <= mildest["acceptance_rate"] < 1.0


def test_the_same_seeds_give_the_same_samples_and_the_burn_in_counts_as_proposals():
    runs = [rejection_sample(four_valued_proposal(5), 300, burn_in=500, batch_size=200,
                             generator=torch.Generator().manual_seed(6)) for _ in range(2)]
    assert torch.equal(runs[0][0], runs[1][0]) and runs[0][1] == runs[1][1]
    assert runs[0][0].shape == (300,) and runs[0][1]["proposals"] >= 500


def test_bad_settings_and_a_sampler_that_accepts_too_little_are_clear_errors():
    with pytest.raises(ConfigError, match="percentile must be in"):
        rejection_sample(four_valued_proposal(0), 10, percentile=100.0)
    with pytest.raises(ConfigError, match="n, burn_in and batch_size >= 1"):
        rejection_sample(four_valued_proposal(0), 0)
    with pytest.raises(GenlabError, match="accepted only .* of the 1000 samples asked for in 1200 proposals"):
        rejection_sample(four_valued_proposal(0), 1_000, percentile=99.0, burn_in=1_000, batch_size=100,
                         max_proposals=1_200, generator=torch.Generator().manual_seed(0))


def small_gan(name: str, **overrides):
    entry = registry.get(name)
    config = entry.config_cls(g_width=4, d_width=4, z_dim=8, **overrides)
    config = entry.model_cls.adapt_config(config, DataInfo("image", (1, 8, 8), 4, (0.0, 1.0)))
    torch.manual_seed(0)
    return entry.model_cls(config)


def test_a_gan_sampled_through_its_discriminator_keeps_the_samples_it_scores_higher():
    model = small_gan("dcgan").train()
    # With the N(0, 0.02) initialisation every logit is ~1e-7 and every image alike: larger weights give images
    # and logits that differ, so there is something to choose.
    for network, scale in ((model.discriminator, 1.0), (model.generator, 0.3)):
        for layer in network.modules():
            if isinstance(layer, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear)):
                torch.nn.init.normal_(layer.weight, 0.0, scale)
    images, labels, facts = sample_with_rejection(model, 200, burn_in=400, batch_size=200,
                                                  generator=torch.Generator().manual_seed(0))
    assert images.shape == (200, 1, 8, 8) and labels is None and model.training  # the mode is put back
    assert 0.0 <= float(images.min()) and float(images.max()) <= 1.0  # the data's value range
    again, _, _ = sample_with_rejection(model, 200, burn_in=400, batch_size=200,
                                        generator=torch.Generator().manual_seed(0))
    assert torch.equal(images, again)
    model.eval()
    plain_logits = discriminator_logits(model, model.sample(2_000, generator=torch.Generator().manual_seed(1)))
    assert plain_logits.std() > 0.5
    assert discriminator_logits(model, images).mean() > plain_logits.mean() + plain_logits.std()
    assert 0.0 < facts["acceptance_rate"] < 1.0


def test_a_conditional_gan_keeps_each_class_share_and_a_clamped_label():
    model = small_gan("cgan")
    images, labels, facts = sample_with_rejection(model, 40, burn_in=400, batch_size=100,
                                                  generator=torch.Generator().manual_seed(0))
    assert images.shape == (40, 1, 8, 8) and labels.tolist() == sum(([k] * 10 for k in range(4)), [])
    assert facts["proposals"] >= 400
    _, clamped, _ = sample_with_rejection(model, 12, label=2, burn_in=100, generator=torch.Generator().manual_seed(0))
    assert clamped.tolist() == [2] * 12
    with pytest.raises(ConfigError, match="out of range"):
        sample_with_rejection(model, 4, label=7)


@pytest.mark.parametrize("loss", ["hinge", "lsgan", "wasserstein"])
def test_critics_whose_scores_are_not_log_density_ratios_are_refused(loss):
    with pytest.raises(ConfigError, match="logistic loss"):
        sample_with_rejection(small_gan("dcgan", loss=loss), 4)
