import pytest
import yaml

from maskfeat.config import ConfigError, builtin_config, load_yaml, resolve_config
from maskfeat.defaults import PRETRAIN


@pytest.mark.parametrize("override,message", [
    ("optim.lrr=1e-3", "unknown config key 'optim.lrr' (did you mean 'optim.lr'?)"),
    ("train.epoch=3", "did you mean 'train.epochs'?"),
    ("lr=1", "did you mean 'optim.lr'?"),
    ("data.rooot=/x", "did you mean 'data.root'?"),
    ("optim.lr=abc", "'optim.lr' expects float, got 'abc'"),
    ("train.batch_size=1.5", "'train.batch_size' expects int"),
    ("train.compile=maybe", "'train.compile' expects bool"),
    ("optim=1", "'optim' is a section"),
    ("optim.lr", "not of the form key=value"),
])
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ConfigError) as e:
        resolve_config(PRETRAIN, None, [override])
    assert message in str(e.value) and "\n" not in str(e.value)


def test_overrides_are_yaml_scalars_never_code():
    cfg = resolve_config(PRETRAIN, None, ["optim.lr=1e-3", "data.scale=[0.2, 1.0]", "data.root=/data/x",
                                         "train.compile=true", "mask.max_aspect=null"])
    assert cfg["optim"]["lr"] == 1e-3 and cfg["data"]["scale"] == [0.2, 1.0]
    assert cfg["data"]["root"] == "/data/x" and cfg["train"]["compile"] is True
    with pytest.raises(ConfigError, match="expects str"):
        resolve_config(PRETRAIN, None, ["data.root=[__import__('os')]"])
    cfg = resolve_config(PRETRAIN, None, ["train.output_dir=__import__('os').system('false')"])
    assert cfg["train"]["output_dir"] == "__import__('os').system('false')"   # a string, not run
    assert resolve_config(PRETRAIN, None, ["optim.lr=3"])["optim"]["lr"] == 3.0  # int accepted as float


def test_file_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  arch: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml.*not valid YAML"):
        resolve_config(PRETRAIN, str(bad))
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("model:\n  archh: vit-base\n")
    with pytest.raises(ConfigError,
                       match=r"unknown.yaml: unknown config key 'model.archh' "
                             r"\(did you mean 'model.arch'\?\)"):
        resolve_config(PRETRAIN, str(unknown))
    code = tmp_path / "code.yaml"
    code.write_text("model: !!python/object/apply:os.system ['false']\n")
    with pytest.raises(ConfigError,
                       match=r"code.yaml: line 1: YAML tag '!!python/object/apply:os.system' refused"):
        load_yaml(code)
    with pytest.raises(ConfigError, match="config file not found"):
        resolve_config(PRETRAIN, str(tmp_path / "missing.yaml"))


def test_default_recipe_file_equals_builtin_defaults():
    cfg = resolve_config(PRETRAIN, "configs/pretrain/maskfeat_vit-mini-p16_skimage.yaml")
    assert cfg == PRETRAIN


def test_vit_base_recipe_has_spec_values():
    cfg = resolve_config(PRETRAIN, str(builtin_config("pretrain/maskfeat_vit-base-p16_in1k")))
    assert cfg["model"]["arch"] == "vit-base" and cfg["model"]["img_size"] == 224
    assert cfg["mask"]["min_num_patches"] == 15 and cfg["mask"]["ratio"] == 0.4
    o = cfg["optim"]
    assert (o["lr"], o["weight_decay"], o["betas"], o["eps"], o["clip_grad"]) == (2e-4, 0.05, [0.9, 0.999],
                                                                                 1e-8, 0.02)
    assert o["lr"] * 2048 / o["base_batch_size"] == pytest.approx(1.6e-3)
    assert (cfg["train"]["epochs"], o["warmup_epochs"], o["min_lr"]) == (300, 30, 1e-6)
    assert cfg["train"]["batch_size"] * 8 == 2048
    assert cfg["data"]["scale"] == [0.5, 1.0] and cfg["data"]["hflip"] == 0.5
    recipe = yaml.safe_load(builtin_config("pretrain/maskfeat_vit-base-p16_in1k").read_text())
    assert recipe["hog"]["gaussian_window"] == 16
