"""How ``lingerlab audit`` reads model files and finds the head and the Grad-CAM layer, on tiny models:
no pickle runs without ``trust_pickle``, the head is the last ``nn.Linear`` with the model's output width,
the layer the last spatial map before global pooling, and a choice that is not unique is an error."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from torch import nn

from lingerlab.cam_layers import locate_layer
from lingerlab.cli.args import UsageError
from lingerlab.cli.loading import _read_file, check_cam_layer, find_head_by_outputs
from lingerlab.models import Normalized


class _Payload:
    """A pickle whose unpickling creates the file ``marker`` (it runs ``open(marker, "w")``)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


class _TwoHeads(nn.Module):
    """Two parallel 10-way heads whose logits are averaged (as distilled ViTs): no head is the last."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head, self.head_dist = nn.Linear(4, 10), nn.Linear(4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        return (self.head(f) + self.head_dist(f)) / 2


def _sequential(num_classes: int = 10) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, num_classes),
    ).eval()


def _resnet18() -> nn.Module:
    import torchvision

    return torchvision.models.resnet18(weights=None, num_classes=10).eval()


# ------------------------------------------------------------------------------------ reading files


@pytest.mark.parametrize("how", ["torch.save", "pickle.dump"])
def test_a_pickle_is_refused_and_never_run(how, tmp_path):
    marker, path = tmp_path / "unpickled", tmp_path / "model.pt"
    if how == "torch.save":
        torch.save({"model": _Payload(marker)}, path)
    else:
        path.write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(UsageError) as e:
        _read_file(str(path), "--target-model")
    assert e.value.flag == "--target-model" and str(path) in e.value.message and "--trust-pickle" in e.value.message
    assert "unpickling runs code from the file" in e.value.message
    assert not marker.exists(), "the pickle was run"


def test_state_dicts_and_torchscript_load_without_the_flag_and_models_with_it(tmp_path):
    m = _sequential()
    torch.save(m.state_dict(), tmp_path / "sd.pt")
    torch.jit.save(torch.jit.script(m), tmp_path / "script.pt")
    torch.save(m, tmp_path / "whole.pt")
    sd = _read_file(str(tmp_path / "sd.pt"), "--target-weights")
    assert set(sd) == set(m.state_dict())
    assert isinstance(_read_file(str(tmp_path / "script.pt"), "--target-model"), torch.jit.ScriptModule)
    with pytest.raises(UsageError, match="--trust-pickle"):
        _read_file(str(tmp_path / "whole.pt"), "--target-model")
    whole = _read_file(str(tmp_path / "whole.pt"), "--target-model", trust_pickle=True)
    x = torch.rand(2, 3, 16, 16)
    assert isinstance(whole, nn.Sequential) and torch.equal(whole(x), m(x))
    (tmp_path / "junk.pt").write_text("not a model")
    with pytest.raises(UsageError, match="is neither a state dict nor TorchScript.*--trust-pickle"):
        _read_file(str(tmp_path / "junk.pt"), "--target-model")
    with pytest.raises(UsageError, match="cannot load"):
        _read_file(str(tmp_path / "junk.pt"), "--target-model", trust_pickle=True)


# ----------------------------------------------------------------------------------------- the head


def test_the_head_is_the_last_linear_with_the_output_width():
    assert find_head_by_outputs(_resnet18(), 32)[0] == "fc"
    assert find_head_by_outputs(_sequential(), 32)[0] == "6"
    assert find_head_by_outputs(Normalized(_sequential()), 32)[0] == "model.6"
    # a 10-way bottleneck before the 10-way head: the last one gives the output
    chain = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 10), nn.ReLU(), nn.Linear(10, 10)).eval()
    assert find_head_by_outputs(chain, 8)[0] == "3"


def test_a_head_that_is_not_unique_or_absent_is_an_error():
    with pytest.raises(ValueError, match=r"2 nn.Linear layers have 10 outputs.*'head', 'head_dist'"):
        find_head_by_outputs(_TwoHeads().eval(), 8)
    no_linear = nn.Sequential(nn.Conv2d(3, 10, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
    with pytest.raises(ValueError, match="no nn.Linear has 10 outputs"):
        find_head_by_outputs(no_linear, 8)


# ----------------------------------------------------------------------------------- the CAM layer


def test_locate_layer_resnet18_and_sequential():
    r = _resnet18()
    assert locate_layer(r, 64) == ("layer4", (512, 2, 2))
    assert locate_layer(r, 32) == ("layer3", (256, 2, 2))  # layer4's map is 1x1 at 32 px
    assert locate_layer(Normalized(r), 64)[0] == "model.layer4"
    assert locate_layer(_sequential(), 32) == ("3", (16, 16, 16))
    assert r.training is False
    r.train()
    locate_layer(r, 32)
    assert r.training and r.layer1.training, "modes are restored"


def test_locate_layer_timm_resnet18():
    timm = pytest.importorskip("timm")
    m = timm.create_model("resnet18", pretrained=False, num_classes=10).eval()
    assert locate_layer(m, 64) == ("layer4", (512, 2, 2))
    assert find_head_by_outputs(m, 64)[0] == "fc"


def test_cam_layer_choices_and_errors():
    a, b = Normalized(_sequential()), Normalized(_sequential(2))
    assert check_cam_layer({"source": a, "target": b}, None, 32) == (
        "model.3",
        {"name": "3", "how": "found", "output": "16x16x16"},
    )
    assert check_cam_layer({"source": a, "target": b}, "1", 32) == (
        "model.1",
        {"name": "1", "how": "given", "output": None},
    )
    deeper = Normalized(
        nn.Sequential(
            *_sequential(2)[:4],
            nn.Conv2d(16, 16, 3, padding=1),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(16, 2),
        ).eval()
    )
    with pytest.raises(UsageError, match=r"differs between the models \(source: '3', target: '4'\)"):
        check_cam_layer({"source": a, "target": deeper}, None, 32)
    flat = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 10)).eval()
    with pytest.raises(UsageError, match="cannot find the Grad-CAM layer of the source model") as e:
        check_cam_layer({"source": flat}, None, 8)
    assert e.value.flag == "--cam-layer"


def test_token_models_keep_their_known_layer():
    """A ViT's maps are tokens: the known layer (reshaped by Grad-CAM), not the patch embedding's conv."""
    from torchvision.models import VisionTransformer

    vit = VisionTransformer(
        image_size=32, patch_size=8, num_layers=1, num_heads=1, hidden_dim=8, mlp_dim=8, num_classes=10
    ).eval()
    assert locate_layer(vit, 32)[0] == "conv_proj"
    name, choice = check_cam_layer({"source": vit}, None, 32)
    assert name is None and choice == {"name": "encoder.layers.encoder_layer_0.ln_1", "how": "known", "output": None}
    assert find_head_by_outputs(vit, 32)[0] == "heads.head"
