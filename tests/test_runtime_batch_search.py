"""The memory-fit batch-size search (build-baseline Step 2, docs/contracts.md) on a simulated memory ceiling."""

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from mlloop.errors import MlloopError
from mlloop.runtime import batch_search
from mlloop.runtime.batch_search import BatchSearchError, candidates, is_oom, module_trainer, search
from train_fixture import one_thread  # noqa: F401  (a fixture: one torch thread)

# Trains, evaluates or spawns interpreters: `pytest -m "not slow"` leaves it out (see conftest.py).
pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]


class Ceiling(L.LightningModule):
    """Raises CUDA's out-of-memory error for batches above ``ceiling``; records every step it trained."""

    def __init__(self, ceiling=10 ** 9, error=None):
        super().__init__()
        self.net = nn.Linear(4, 2)
        self.ceiling, self.error = ceiling, error
        self.trained = []  # batch sizes of completed forward passes

    def training_step(self, batch, batch_idx):
        x, y = batch
        if self.error is not None:
            raise self.error
        if x.shape[0] > self.ceiling:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 15.77 GiB total capacity)")
        self.trained.append(x.shape[0])
        return nn.functional.cross_entropy(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-2)


def dataset(n=20):
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(n, 4, generator=g), torch.randint(0, 2, (n,), generator=g))


def run_search(module, lo, hi, steps=3):
    train_steps, _ = module_trainer(module, dataset(), torch.device("cpu"))
    return search(train_steps, lo, hi, steps=steps)


def test_candidates_are_powers_of_two_in_range_largest_first():
    assert candidates(4, 32) == [32, 16, 8, 4]
    assert candidates(3, 20) == [16, 8, 4]
    assert candidates(1, 1) == [1]
    with pytest.raises(BatchSearchError, match=r"no power of two lies in \[5, 7\]"):
        candidates(5, 7)
    with pytest.raises(BatchSearchError, match="is empty"):
        candidates(8, 4)


@pytest.mark.parametrize("lo,hi,ceiling,expected,tried", [
    (2, 32, 12, 8, [32, 16, 8]),
    (4, 32, 24, 16, [32, 16]),        # Lightning's Tuner returns 32 or 30 here, untested
    (4, 32, 1000, 32, [32]),          # the maximum fits: one trial
    (2, 64, 2, 2, [64, 32, 16, 8, 4, 2]),
])
def test_returns_the_largest_size_that_trained(lo, hi, ceiling, expected, tried):
    module = Ceiling(ceiling)
    result = run_search(module, lo, hi, steps=3)
    assert result.batch_size == expected
    assert [t.batch_size for t in result.trials] == tried
    assert [t.status for t in result.trials] == ["OOM"] * (len(tried) - 1) + ["PASS"]
    # never an untested size: the winner really trained, for exactly `steps` steps, and nothing larger did
    assert module.trained == [expected] * 3
    assert result.trials[-1].steps == 3
    assert all(t.seconds >= 0 for t in result.trials) and result.seconds >= 0
    assert "CUDA out of memory" in result.trials[0].error or len(tried) == 1


def test_fails_clearly_when_even_the_smallest_size_runs_out_of_memory():
    module = Ceiling(ceiling=3)
    with pytest.raises(BatchSearchError) as info:
        run_search(module, 4, 16)
    message = str(info.value)
    assert message.startswith("even the smallest batch size 4 ran out of memory (tried 16, 8, 4)")
    assert "min_batch_size" in message
    assert [t.batch_size for t in info.value.trials] == [16, 8, 4]
    assert all(t.status == "OOM" for t in info.value.trials)
    assert module.trained == []


@pytest.mark.parametrize("error", [RuntimeError("mat1 and mat2 shapes cannot be multiplied (4x3 and 4x2)"),
                                   ValueError("bad label"),
                                   RuntimeError("CUDA error: an illegal memory access was encountered")])
def test_errors_other_than_out_of_memory_propagate_at_once(error):
    module = Ceiling(error=error)
    with pytest.raises(type(error), match=str(error).split("(")[0][:20]):
        run_search(module, 2, 16)


def test_torch_out_of_memory_type_and_cpu_allocator_are_recognised():
    assert is_oom(torch.cuda.OutOfMemoryError("CUDA out of memory."))
    assert is_oom(RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 bytes"))
    assert not is_oom(RuntimeError("CUDA error: an illegal memory access was encountered (out of memory?)"))
    assert not is_oom(ValueError("out of memory"))  # only RuntimeErrors are memory errors


def test_trials_leave_the_weights_as_they_were():
    module = Ceiling(ceiling=8)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    run_search(module, 2, 32, steps=4)
    after = module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in module.parameters())


def test_a_trial_batch_has_exactly_the_candidate_size_even_when_the_data_is_smaller():
    module = Ceiling()
    train_steps, _ = module_trainer(module, dataset(n=5), torch.device("cpu"))
    result = search(train_steps, 16, 16, steps=1)
    assert result.batch_size == 16 and module.trained == [16]


def test_configure_optimizers_forms_are_accepted():
    opt = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1)
    assert batch_search.optimizer_of(opt) is opt
    assert batch_search.optimizer_of({"optimizer": opt, "lr_scheduler": None}) is opt
    assert batch_search.optimizer_of(([opt], [])) is opt
    with pytest.raises(MlloopError, match="returned no optimizer"):
        batch_search.optimizer_of(None)
