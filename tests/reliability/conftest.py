import pytest


@pytest.fixture(scope="session")
def stopping_model(tmp_path_factory):
    """A tiny random model that ends about half of its sampled responses within a few tokens."""
    from reliability_kit import build_stopping_model

    return build_stopping_model(tmp_path_factory.mktemp("stopping") / "m")


@pytest.fixture(scope="session")
def bench_data(tmp_path_factory):
    """A --data-dir with made-up strongreject / xstest / gsm8k files in the reference layout."""
    from reliability_kit import write_bench_data

    return write_bench_data(tmp_path_factory.mktemp("benchdata"))


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """In-process model runs: one thread is fastest for tiny models on a busy 2-core box."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
