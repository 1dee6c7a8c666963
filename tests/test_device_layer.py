"""engine/device.py with a fake accelerator of another type ('npu': neither cuda nor cpu), as a vendor
plugin (torch_npu, torch_sdaa, ...) would register it; and the command line's one-line errors."""
import sys
from collections import namedtuple

import pytest
import torch
import torch.distributed as dist

from helpers import maskfeat, one_error_line
from maskfeat.engine import device as D
from maskfeat.engine.checkpoint import (
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from maskfeat.errors import UserError

FakeDevice = namedtuple("FakeDevice", "type index")


class FakeNpu:
    """The calls a device module (torch.cuda, torch.npu, ...) offers, on two fake devices."""

    def __init__(self, count=2, bf16=True):
        self.count, self.bf16, self.current, self.synced = count, bf16, None, 0
        self.states = [torch.full((4,), i, dtype=torch.uint8) for i in range(count)]

    def is_available(self):
        return True

    def device_count(self):
        return self.count

    def set_device(self, index):
        self.current = index

    def synchronize(self, device=None):
        self.synced += 1

    def is_bf16_supported(self):
        return self.bf16

    def max_memory_allocated(self):
        return 3 * 2**20 + 5

    def get_rng_state_all(self):
        return [s.clone() for s in self.states]

    def set_rng_state_all(self, states):
        self.states = [s.clone() for s in states]


@pytest.fixture
def npu(monkeypatch):
    """A fake 'npu' accelerator the layer sees as torch.get_device_module('npu') and the current one
    (no torch.accelerator: the torch 2.4/2.5 path, the device module's own calls)."""
    fake, module = FakeNpu(), D._module
    monkeypatch.setattr(D, "_module", lambda t: fake if t == "npu" else module(t))
    monkeypatch.setattr(D, "_current_accelerator", lambda: "npu")
    monkeypatch.setattr(D, "_accelerator_api", lambda: None)
    make = D._make_device
    monkeypatch.setattr(D, "_make_device", lambda t, i=None: FakeDevice(t, i) if t == "npu" else make(t, i))
    monkeypatch.setattr(D, "_autocast_available", lambda t: True)
    return fake


def one_line(e) -> str:
    text = str(e.value)
    assert "\n" not in text
    return text


def test_auto_picks_the_accelerator_with_index_per_local_rank(npu):
    assert D.choose_device("auto") == ("npu", 0)
    assert D.choose_device("npu:1") == ("npu", 1)
    assert D.choose_device("auto", local_rank=1) == ("npu", 1)           # torchrun's LOCAL_RANK
    assert D.choose_device("cpu") == torch.device("cpu")
    assert D.select_device({"device": "npu:1", "device_modules": []}) == ("npu", 1) and npu.current == 1
    with pytest.raises(UserError) as e:
        D.choose_device("npu:1", local_rank=1)
    assert one_line(e) == "train.device: npu device 2 wanted (index 1 + local rank 1) but torch sees 2"
    assert D.device_count() == 2 and D.offered() == "cpu, npu (2 devices)"


def test_unknown_device_is_one_line_listing_what_torch_offers(npu):
    with pytest.raises(UserError) as e:
        D.choose_device("foo", key="eval.device")
    assert one_line(e) == ("eval.device: no 'foo' device here; torch offers cpu, npu (2 devices) "
                           "(a vendor backend needs its plugin in eval.device_modules, e.g. [torch_npu])")


def test_plugins_are_imported_before_the_choice(tmp_path, monkeypatch):
    with pytest.raises(UserError) as e:
        D.select_device({"device": "auto", "device_modules": ["no_such_plugin_q7"]})
    assert one_line(e).startswith("train.device_modules: cannot import 'no_such_plugin_q7' "
                                  "(ModuleNotFoundError")
    (tmp_path / "fake_plugin_q7.py").write_text("REGISTERED = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(D, "_current_accelerator", lambda: "npu" if "fake_plugin_q7" in sys.modules else None)
    monkeypatch.setattr(D, "_module", lambda t: FakeNpu() if t == "npu" else torch.cpu)
    monkeypatch.setattr(D, "_accelerator_api", lambda: None)
    monkeypatch.setattr(D, "_make_device", lambda t, i=None: FakeDevice(t, i))
    try:
        assert D.select_device({"device": "auto", "device_modules": []}) == ("cpu", None)
        assert D.select_device({"device": "auto", "device_modules": ["fake_plugin_q7"]}) == ("npu", 0)
    finally:
        sys.modules.pop("fake_plugin_q7", None)


def test_process_group_backend(npu, monkeypatch):
    monkeypatch.setitem(dist.Backend.default_device_backend_map, "npu", "hccl")
    monkeypatch.setattr(dist, "get_default_backend_for_device",
                        lambda d: dist.Backend.default_device_backend_map.get(d.type))
    dev = D.choose_device("npu")
    assert D.backend_for(dev) == "hccl" and D.backend_for(dev, "tccl") == "tccl"
    assert D.backend_for(torch.device("cpu")) == "gloo"
    assert D.ddp_device_ids(dev) == [0] and D.ddp_device_ids(torch.device("cpu")) is None
    with pytest.raises(UserError) as e:
        D.backend_for(FakeDevice("sdaa", 0))
    assert one_line(e).startswith("dist.backend: torch has no default process-group backend for sdaa")


def test_torch_default_backend_for_cuda_type():
    assert D.backend_for(torch.device("cuda", 0)) == "nccl"      # torch's own table; no GPU needed


def test_amp_choice(npu, monkeypatch):
    dev = D.choose_device("npu")
    assert D.amp_dtype("auto", dev) == torch.bfloat16 and not D.grad_scaler(dev, torch.bfloat16).is_enabled()
    npu.bf16 = False
    assert D.amp_dtype("auto", dev) == torch.float16
    assert D.grad_scaler(dev, torch.float16).is_enabled()
    monkeypatch.setattr(D, "_autocast_available", lambda t: False)
    assert D.amp_dtype("auto", dev) is None                          # no autocast on the device: fp32
    with pytest.raises(UserError) as e:
        D.amp_dtype("fp16", dev, "eval.amp")
    assert one_line(e) == ("eval.amp: fp16 needs autocast, which torch does not offer on npu; "
                           "use eval.amp=none")
    cpu = torch.device("cpu")
    assert D.amp_dtype("auto", cpu) is None and D.amp_dtype("fp16", cpu) == torch.float16
    assert D.amp_dtype("bf16", cpu) == torch.bfloat16                # forced on the CPU


def test_memory_sync_and_pinning(npu):
    dev = D.choose_device("npu:1")
    assert D.peak_memory_mib(dev) == 3 and D.peak_memory_mib(torch.device("cpu")) == 0
    D.synchronize(dev)
    D.synchronize(torch.device("cpu"))
    assert npu.synced == 1
    assert D.pin_memory(True) is True and D.pin_memory(False) is False


def test_rng_round_trip_on_the_fake_device(npu, tmp_path):
    dev = D.choose_device("npu")
    state = rng_state(dev)
    assert state["device_rng"]["type"] == "npu"
    assert [int(s[0]) for s in state["device_rng"]["states"]] == [0, 1]
    save_checkpoint({"rng": state}, tmp_path / "c.pth")
    saved = load_checkpoint(tmp_path / "c.pth")["rng"]                 # weights_only=True
    npu.states = [torch.full((4,), 9, dtype=torch.uint8)] * 2
    assert set_rng_state(saved, dev) is None
    assert [s.tolist() for s in npu.states] == [[0] * 4, [1] * 4]


def test_rng_saved_on_another_device_type_says_so(npu):
    old = rng_state()
    old["cuda"] = [torch.zeros(16, dtype=torch.uint8)]                # a checkpoint of before the layer
    note = set_rng_state(old, torch.device("cpu"))
    assert note == ("resume: the checkpoint was saved on cuda; its device RNG state is not restored on cpu "
                    "(device-side random draws differ from the original run)")
    assert set_rng_state(rng_state(torch.device("cpu")), D.choose_device("npu")) == \
        "resume: the checkpoint was saved on cpu, no npu RNG state to restore"
    assert [int(s[0]) for s in npu.states] == [0, 1]                  # untouched


def test_cli_unknown_device_exits_2_with_one_line(tmp_path):
    r = maskfeat("pretrain", f"train.output_dir={tmp_path / 'run'}", "train.device=foo")
    assert r.returncode == 2, r.stderr[-2000:]
    line = one_error_line(r.stderr)
    assert line.startswith("maskfeat pretrain: error: train.device: no 'foo' device here; torch offers cpu")
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "run").exists()
    r = maskfeat("pretrain", f"train.output_dir={tmp_path / 'run'}", "train.device=CUDA!")
    assert r.returncode == 2 and "train.device: 'CUDA!' is not valid" in one_error_line(r.stderr)


def test_torch_accelerator_calls_are_preferred(npu, monkeypatch):
    """torch >= 2.6: torch.accelerator's calls for the current accelerator's type."""
    calls = []
    api = type("Api", (), {"set_device_index": staticmethod(lambda i: calls.append(("index", i))),
                           "synchronize": staticmethod(lambda d: calls.append(("sync", d.index))),
                           "max_memory_allocated": staticmethod(lambda: 7 * 2**20)})
    monkeypatch.setattr(D, "_accelerator_api", lambda: api)
    dev = D.select_device("npu:1")
    D.synchronize(dev)
    assert calls == [("index", 1), ("sync", 1)] and D.peak_memory_mib(dev) == 7
    assert npu.current is None and npu.synced == 0                    # the module's own calls unused


def test_nvjpeg_decode_on_another_accelerator_is_one_line(npu):
    from maskfeat.data.device_decode import check_device_decode

    with pytest.raises(UserError) as e:
        check_device_decode(D.choose_device("npu"))
    assert one_line(e) == ("data.decode=device: JPEG decoding on the device needs CUDA (nvJPEG), "
                           "the run is on npu; set data.decode=cpu")
