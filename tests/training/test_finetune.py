"""Fine-tuning: which weights train, layer-wise learning rates, the head first, LoRA, the plan
when model.pretrained is set, and one run starting from another."""

from __future__ import annotations

import json

import pytest
import torch

from medsight.config import TrainConfig
from medsight.models import build_model
from medsight.planning.finetune import plan_finetune
from medsight.training.finetune import freeze
from medsight.training.optim import make_optimizer, make_scheduler, param_groups
from tests.conftest import tiny_config
from tests.models.test_backbones import TINY


def _resnet():
    torch.manual_seed(0)
    return build_model("resnet18-small", 1, 2, 2, width=4)


def _trainable(model) -> set[str]:
    return {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}


def test_linear_trains_the_head_and_partial_the_last_stages():
    model = _resnet()
    assert freeze(model, "linear") == ["fc"] and _trainable(model) == {"fc"}
    assert freeze(model, "partial", 2) == ["layer3", "layer4", "fc"]
    assert _trainable(model) == {"layer3", "layer4", "fc"}
    freeze(model, "full")
    assert all(p.requires_grad for p in model.parameters())


def test_layer_decay_scales_each_stage_below_the_head():
    cfg = TrainConfig(lr=1.0, layer_decay=0.5, optimizer="adamw")
    groups = param_groups(_resnet(), cfg)
    assert [g["stage"] for g in groups] == ["conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "fc"]
    assert [g["lr"] for g in groups] == pytest.approx([0.5**k for k in range(6, -1, -1)])
    assert [g["head"] for g in groups] == [False] * 6 + [True]


def test_head_epochs_hold_the_body_at_rate_zero_then_release_it():
    model = _resnet()
    cfg = TrainConfig(lr=0.1, head_epochs=1, warmup_epochs=0, epochs=4, schedule="none", optimizer="sgd")
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg)
    assert [g["lr"] for g in optimizer.param_groups][-2:] == [0.0, 0.1]  # layer4 held, fc trains
    optimizer.step()
    scheduler.step()
    assert all(g["lr"] == pytest.approx(0.1) for g in optimizer.param_groups)


def test_a_head_fraction_holds_the_body_for_that_share_of_the_fitted_epochs_and_never_again():
    model = _resnet()
    cfg = TrainConfig(lr=0.1, head_fraction=0.4, warmup_epochs=0, epochs=10, schedule="none", optimizer="sgd")
    planned = {"epochs": 10}  # what a time budget fits, refitted as the run goes
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg, lambda: planned["epochs"])
    body = []
    for epoch in range(8):
        body.append(optimizer.param_groups[-2]["lr"])  # layer4
        assert optimizer.param_groups[-1]["lr"] == pytest.approx(0.1)  # the head always trains
        if epoch == 5:
            planned["epochs"] = 20  # a faster machine: 40% of 20 would be 8, but the body was released
        optimizer.step()
        scheduler.step()
    assert body == pytest.approx([0.0] * 4 + [0.1] * 4)


def test_the_plan_fine_tunes_gently_from_pretrained_weights(tmp_path):
    assert plan_finetune(tiny_config(), {"train.lr": 1e-3}) == {}
    cnn = plan_finetune(tiny_config(model={"pretrained": str(tmp_path)}), {"train.lr": 1e-3})
    assert cnn == {"train.finetune": "full", "train.lr": pytest.approx(1e-4), "train.head_epochs": 1,
                   "train.head_fraction": 0.0, "train.warmup_epochs": 2, "train.layer_decay": 1.0}
    vit = plan_finetune(tiny_config(model={"name": "vit", "pretrained": str(tmp_path)}), {"train.lr": 1e-3})
    assert vit["train.layer_decay"] == 0.75
    linear = plan_finetune(tiny_config(model={"pretrained": str(tmp_path)}, train={"finetune": "linear"}),
                           {"train.lr": 1e-3})
    assert linear["train.lr"] == 1e-3 and linear["train.head_epochs"] == 0


def test_lora_trains_only_adapters_and_head_and_merges_to_the_same_outputs():
    pytest.importorskip("peft")
    from medsight.models.lora import apply_lora, merge_lora

    torch.manual_seed(0)
    vit = build_model("vit", 1, 3, 2, input_size=(32, 32), **TINY["vit"])
    before = {k: v.clone() for k, v in vit.state_dict().items()}
    model = apply_lora(vit, rank=2, alpha=4)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or "classification_head" in n for n in trainable)
    assert any("blocks.0.attn.qkv.lora_A" in n for n in trainable)
    optimizer = make_optimizer(model, TrainConfig(lr=0.05, optimizer="adamw"))
    x = torch.rand(4, 1, 32, 32)
    for _ in range(3):
        optimizer.zero_grad()
        model(x).logsumexp(1).mean().backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        adapted = model(x)
        merged = merge_lora(model)
        assert type(merged).__name__ == "ViTClassifier"
        assert torch.allclose(merged(x), adapted, atol=1e-5)
    changed = {k for k, v in merged.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(".attn." in k or "classification_head" in k for k in changed)


def test_a_run_starts_from_another_run_and_the_plan_records_it(tmp_path, caplog):
    from medsight.training.run import train_run

    small = {"data": {"synthetic": {"n_train": 24, "n_val": 8, "n_test": 8, "size": 32}},
             "model": {"options": {"width": 4}}}
    cfg = tiny_config(train={"epochs": 1, "batch_size": 8, "precise_bn_samples": 0}, **small)
    first = train_run(cfg, tmp_path / "first")
    caplog.set_level("INFO", logger="medsight")
    second_cfg = tiny_config(train={"epochs": 1, "batch_size": 8, "precise_bn_samples": 0, "lr": None},
                             model={"pretrained": str(first), "options": {"width": 4}}, data=small["data"])
    second = train_run(second_cfg, tmp_path / "second")
    plan = json.loads((second / "plan.json").read_text())
    assert plan["pretrained"]["source"] == str(first) and plan["pretrained"]["file"].endswith(("best.pt", "last.pt"))
    assert plan["pretrained"]["n_fresh"] == 0 and plan["pretrained"]["source_task"] == "classification"
    assert plan["planned"]["train.head_epochs"] == 1 and plan["finetune"]["mode"] == "full"
    assert any("pretrained" in r.getMessage() and "tensors loaded" in r.getMessage() for r in caplog.records)
    from medsight.inference.load import load_run

    run = load_run(second, prefer_onnx=False)  # inference builds the net as training did
    assert run.model.conv1.weight.shape[0] == 4


def test_an_encoder_from_medsight_pretrain_fine_tunes_at_the_full_rate(tmp_path):
    # self-supervised features are a start: a tenth of the rate froze them (BUSI, see the rule)
    (tmp_path / "plan.json").write_text(json.dumps({"task": "pretrain"}))
    ssl = plan_finetune(tiny_config(model={"pretrained": str(tmp_path)}), {"train.lr": 1e-3})
    assert ssl["train.lr"] == 1e-3 and ssl["train.warmup_epochs"] == 2
    # and a linear probe first (LP-FT): one head epoch let the first full-rate steps wreck the features
    assert ssl["train.head_epochs"] == 0 and ssl["train.head_fraction"] == 0.4
    (tmp_path / "plan.json").write_text(json.dumps({"task": "classification"}))  # a supervised run
    assert plan_finetune(tiny_config(model={"pretrained": str(tmp_path)}), {"train.lr": 1e-3})["train.lr"] \
        == pytest.approx(1e-4)


def test_a_self_supervised_encoder_of_such_images_with_a_few_dozen_labels_is_probed_not_fine_tuned(tmp_path):
    # 42-45 labels: the probe matched or beat LP-FT with a smaller spread; 104+: it lost on BUSI
    from medsight.planning.classification import fingerprint, plan_classification
    from medsight.planning.finetune import PROBE_ONLY_BELOW
    from tests.planning.test_classification_plan import _items

    grey = fingerprint(_items((1, 28, 28), n=40), ["a", "b"])
    (tmp_path / "plan.json").write_text(json.dumps({"task": "pretrain", "fingerprint": grey}))
    cfg = tiny_config(model={"pretrained": str(tmp_path)})
    few = plan_finetune(cfg, {"train.lr": 1e-3}, {**grey, "n_cases": PROBE_ONLY_BELOW - 1})
    assert few["train.finetune"] == "linear" and few["train.lr"] == 1e-3
    assert few["train.head_fraction"] == 0.0 and few["train.head_epochs"] == 0
    many = plan_finetune(cfg, {"train.lr": 1e-3}, {**grey, "n_cases": PROBE_ONLY_BELOW})
    assert many["train.finetune"] == "full" and many["train.head_fraction"] == 0.4
    # an encoder of other images must adapt (probed, BUSI's gave fundus-dr 0.486 against LP-FT's 0.595)
    rgb = fingerprint(_items((3, 28, 28), n=40), ["a", "b"])
    assert plan_finetune(cfg, {"train.lr": 1e-3}, rgb)["train.head_fraction"] == 0.4
    chosen = tiny_config(model={"pretrained": str(tmp_path)}, train={"finetune": "full"})
    assert plan_finetune(chosen, {"train.lr": 1e-3}, grey)["train.head_fraction"] == 0.4  # the config wins
    (tmp_path / "plan.json").write_text(json.dumps({"task": "classification", "fingerprint": grey}))
    assert plan_finetune(cfg, {"train.lr": 1e-3}, grey)["train.head_epochs"] == 1  # supervised: one head epoch
    (tmp_path / "plan.json").write_text(json.dumps({"task": "pretrain", "fingerprint": grey}))
    for n, mode in ((40, "linear"), (PROBE_ONLY_BELOW + 6, "full")):  # the planner counts the training cases
        planned = plan_classification(fingerprint(_items((1, 28, 28), n=n), ["a", "b"]), cfg)
        assert planned["train.finetune"] == mode, n


@pytest.mark.parametrize("task, head_epochs", [("pretrain", 0), ("classification", 0), ("segmentation", 1)])
def test_a_segmentation_net_from_an_encoder_trains_its_fresh_decoder_from_the_start(tmp_path, task, head_epochs):
    (tmp_path / "plan.json").write_text(json.dumps({"task": task}))
    cfg = tiny_config(model={"name": "flexunet", "pretrained": str(tmp_path)})
    assert plan_finetune(cfg, {"train.lr": 1e-3})["train.head_epochs"] == head_epochs
    planned = tiny_config(model={"name": None, "pretrained": str(tmp_path)})  # the planner's dynunet
    assert plan_finetune(planned, {"train.lr": 1e-3, "model.name": "dynunet"})["train.head_epochs"] == head_epochs
