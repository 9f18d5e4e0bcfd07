"""Box embeddings: Fourier features and the position net (coordinate order, padding, checkpoint keys)."""

from __future__ import annotations

import math

import pytest
import torch

from ccaug.model.embeddings import FourierEmbedder, PositionNet


def test_fourier_matches_a_hand_computation() -> None:
    x = torch.tensor([[0.25, 0.5, 0.75], [0.0, 1.0, 0.1]], dtype=torch.float64)
    out = FourierEmbedder(num_freqs=8, max_freq=100)(x)
    for row in range(2):
        expected = []
        for k in range(8):
            frequency = 100 ** (k / 8)
            expected += [math.sin(frequency * value) for value in x[row].tolist()]
            expected += [math.cos(frequency * value) for value in x[row].tolist()]
        assert out[row].tolist() == pytest.approx(expected, abs=1e-12)


def test_fourier_of_eight_coordinates_is_128_wide_and_has_no_state() -> None:
    embedder = FourierEmbedder()
    assert embedder(torch.rand(2, 3, 8)).shape == (2, 3, 128)
    assert embedder.state_dict() == {}
    assert list(embedder.parameters()) == []


def test_fourier_keeps_its_frequencies_exact_in_half_precision_modules() -> None:
    embedder = FourierEmbedder().to(torch.bfloat16)
    x = torch.full((1, 8), 0.5)
    reference = FourierEmbedder()(x)
    assert torch.allclose(embedder(x), reference)


def test_position_net_reorders_corners_to_all_x_then_all_y() -> None:
    torch.manual_seed(0)
    net = PositionNet(out_dim=16, hidden=32)
    polygons = torch.rand(2, 3, 8)
    reordered = polygons[..., [0, 2, 4, 6, 1, 3, 5, 7]]
    expected = net.linears_position(net.fourier(reordered))
    assert torch.allclose(net(polygons), expected, atol=1e-6)
    not_reordered = net.linears_position(net.fourier(polygons))
    assert not torch.allclose(net(polygons), not_reordered, atol=1e-3)


def test_position_net_tells_x_from_y() -> None:
    torch.manual_seed(0)
    net = PositionNet(out_dim=16, hidden=32)
    polygon = torch.tensor([0.1, 0.2, 0.6, 0.2, 0.6, 0.4, 0.1, 0.4])
    swapped = polygon.view(4, 2).flip(-1).reshape(8)
    assert not torch.allclose(net(polygon), net(swapped), atol=1e-4)


def test_position_net_checkpoint_keys_match_the_reference() -> None:
    keys = set(PositionNet(out_dim=16, hidden=32).state_dict())
    assert keys == {f"linears_position.{i}.{kind}" for i in (0, 2, 4) for kind in ("weight", "bias")}


def test_padded_boxes_give_zero_tokens_and_no_nan_gradients() -> None:
    torch.manual_seed(0)
    net = PositionNet(out_dim=16, hidden=32)
    polygons = torch.rand(2, 3, 8)
    polygons[0, 1] = float("inf")  # anything may sit in a padded slot
    valid = torch.tensor([[True, False, True], [False, True, True]])
    tokens = net(polygons, valid)
    assert torch.equal(tokens[~valid], torch.zeros(2, 16))
    assert torch.allclose(tokens[valid], net(polygons[valid]))
    tokens.square().sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters())


def test_learned_null_embedding_fills_padded_slots() -> None:
    net = PositionNet(out_dim=16, hidden=32, null="learned")
    with torch.no_grad():
        net.null_embedding.fill_(0.5)
    valid = torch.tensor([[True, False]])
    tokens = net(torch.rand(1, 2, 8), valid)
    assert torch.equal(tokens[0, 1], torch.full((16,), 0.5))
    assert "null_embedding" in net.state_dict()
    with pytest.raises(ValueError, match="valid"):
        net(torch.rand(1, 2, 8))


def test_position_net_rejects_unknown_null_modes_and_wrong_shapes() -> None:
    with pytest.raises(ValueError, match="null"):
        PositionNet(out_dim=16, null="zero")
    net = PositionNet(out_dim=16, hidden=32)
    with pytest.raises(ValueError, match="8 coordinates"):
        net(torch.rand(2, 4))
    with pytest.raises(ValueError, match="valid"):
        net(torch.rand(2, 3, 8), torch.ones(2, dtype=torch.bool))
