"""Prices from the workspace's conveyor.toml: the table, its errors, and the costs it sets."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor import Workspace
from conveyor.compute.cost import ON_DEMAND, SPOT, WATTS, PriceTable, UsageMeter
from conveyor.core.config import load_settings
from conveyor.core.errors import ConfigError

TEN_X_CPU = round(10 * ON_DEMAND["cpu"], 6)


def workspace(root: Path, prices: str) -> Workspace:
    """A fresh SQLite workspace whose conveyor.toml ends with `prices`, opened again."""
    Workspace.init(root).close()
    with (root / "conveyor.toml").open("a") as f:
        f.write("\n" + prices)
    return Workspace.open(root)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "conveyor.toml"
    path.write_text(text)
    return path


def busy_meter(prices: PriceTable) -> UsageMeter:
    """A meter that measured some CPU time (how much does not matter to the tests)."""
    meter = UsageMeter("cpu", prices=prices).start()
    total = 0
    while meter.usage().device_seconds < 0.02:
        total += sum(range(1000))
    meter.stop()
    return meter


def test_conveyor_toml_prices_merge_over_the_defaults(tmp_path: Path) -> None:
    toml = (
        f'[prices]\nmarket = "spot"\n[prices.on_demand]\ncpu = {TEN_X_CPU}\nT4 = 0.35\n'
        "[prices.spot]\nh100 = 2.10\n[prices.watts]\ntpu-v5 = 200\n"
    )
    with workspace(tmp_path / "ws", toml) as ws:
        prices = ws.prices
    assert prices == PriceTable.from_settings(load_settings(tmp_path / "ws" / "conveyor.toml"))
    assert prices.on_demand["cpu"] == TEN_X_CPU and prices.on_demand["t4"] == 0.35  # lower-cased
    assert prices.spot["h100"] == 2.10
    assert prices.watts["tpu-v5"] == 200.0  # a device the defaults lack is added
    # every device not named keeps its default
    assert {k: v for k, v in prices.on_demand.items() if k not in ("cpu", "t4")} == {
        k: v for k, v in ON_DEMAND.items() if k not in ("cpu", "t4")
    }
    assert {k: v for k, v in prices.spot.items() if k != "h100"} == {
        k: v for k, v in SPOT.items() if k != "h100"
    }
    assert {k: v for k, v in prices.watts.items() if k != "tpu-v5"} == WATTS
    assert prices.market == "spot" and prices.price("cpu") == SPOT["cpu"]
    assert prices.price("cpu", "on_demand") == TEN_X_CPU


def test_no_prices_section_is_the_built_in_table(tmp_path: Path) -> None:
    with workspace(tmp_path / "ws", "") as ws:
        assert ws.prices == PriceTable()


def test_the_environment_overrides_the_file_dashed_names_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "[prices.on_demand]\ncpu = 1.0\nt4 = 0.4\n")
    monkeypatch.setenv("CONVEYOR_PRICES__ON_DEMAND__CPU", "0.25")
    monkeypatch.setenv("CONVEYOR_PRICES__SPOT__A100-80GB", "1.5")
    monkeypatch.setenv("CONVEYOR_PRICES__MARKET", "spot")
    prices = PriceTable.from_settings(load_settings(path))
    assert prices.on_demand["cpu"] == 0.25 and prices.on_demand["t4"] == 0.4  # file kept
    assert prices.spot["a100-80gb"] == 1.5 and prices.market == "spot"


def test_the_usage_meter_charges_the_configured_price(tmp_path: Path) -> None:
    with workspace(tmp_path / "ws", f"[prices.on_demand]\ncpu = {TEN_X_CPU}\n") as ws:
        usage = busy_meter(ws.prices).usage()
    assert usage.market == "on_demand" and usage.device_seconds > 0
    default_cost = PriceTable().price("cpu") * usage.device_seconds / 3600  # type: ignore[operator]
    assert usage.cost_usd == pytest.approx(10 * default_cost)


def test_market_in_the_settings_picks_the_column_unless_the_caller_names_one(
    tmp_path: Path,
) -> None:
    prices = PriceTable.from_settings(load_settings(write(tmp_path, '[prices]\nmarket = "spot"\n')))
    meter = busy_meter(prices)
    usage = meter.usage()
    assert usage.market == "spot"
    assert usage.cost_usd == pytest.approx(SPOT["cpu"] * usage.device_seconds / 3600)
    assert UsageMeter("cpu", prices=prices, market="on_demand").market == "on_demand"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[prices.on_demand]\ncpu = -0.5\n", r"'prices.on_demand.cpu' = -0.5.*>= 0"),
        ("[prices.spot]\nt4 = inf\n", r"'prices.spot.t4' = inf.*finite number >= 0"),
        ("[prices.watts]\nt4 = true\n", r"'prices.watts.t4' = True.*number >= 0, in watts"),
        ('[prices.on_demand]\nl4 = "cheap"\n', r"'prices.on_demand.l4' = 'cheap'.*>= 0"),
        ('[prices]\nmarket = "reserved"\n', r"'prices.market'.*'on_demand' or 'spot'"),
        ("[prices.ondemand]\ncpu = 1.0\n", r"unknown setting 'prices.ondemand'.*'on_demand'"),
        ("[prices.wats]\ncpu = 5\n", r"unknown setting 'prices.wats'.*did you mean 'watts'"),
        ('[price]\nmarket = "spot"\n', r"unknown setting 'price'.*did you mean 'prices'"),
    ],
)
def test_a_bad_price_or_a_typo_is_one_line_that_says_what_to_write(
    tmp_path: Path, text: str, expected: str
) -> None:
    with pytest.raises(ConfigError, match=expected) as caught:
        load_settings(write(tmp_path, text))
    assert "\n" not in str(caught.value)


def test_a_negative_price_from_the_environment_is_reported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CONVEYOR_PRICES__ON_DEMAND__CPU", "-1")
    with pytest.raises(ConfigError, match=r"'prices.on_demand.cpu' = '-1'.*CONVEYOR_.*>= 0"):
        load_settings()


def test_the_price_table_itself_rejects_what_is_not_finite(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a number >= 0"):
        PriceTable().with_overrides({"on_demand": {"cpu": float("nan")}})
    with pytest.raises(ConfigError, match="on_demand or spot"):
        PriceTable().with_overrides({"market": "reserved"})
    path = tmp_path / "prices.toml"
    path.write_text('[prices]\nmarket = "spot"\n[prices.spot]\ncpu = 0.01\n')
    assert PriceTable.from_toml(path).price("cpu") == 0.01  # conveyor.toml's shape works too


# -- the call sites: the trainer (and so the recipes), stored run costs, jobs -------------


class Steps:
    """A resumable stand-in for a Conveyor loader: a few fixed (inputs, target) batches."""

    def __init__(self) -> None:
        import torch

        generator = torch.Generator().manual_seed(0)
        self.batches = [
            (
                torch.randn(32, 8, generator=generator),
                torch.randint(0, 2, (32,), generator=generator),
            )
            for _ in range(4)
        ]

    def __iter__(self) -> Iterator[Any]:
        return iter(self.batches)

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def test_a_training_run_is_costed_and_stored_at_the_workspace_price(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from conveyor.training import fit

    root = tmp_path / "ws"
    with workspace(root, f"[prices.on_demand]\ncpu = {TEN_X_CPU}\n") as ws:
        model = torch.nn.Linear(8, 2)
        run = ws.runs.start(name="priced")
        result = fit(
            model,
            Steps(),
            optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
            run=run,
            workspace=ws,
            device="cpu",
        )
        usage = result.usage
        assert usage is not None and usage.market == "on_demand" and usage.device_seconds > 0
        default_cost = ON_DEMAND["cpu"] * usage.device_seconds / 3600
        assert usage.cost_usd == pytest.approx(10 * default_cost)
        # the cost is stored when the run logs it; `conveyor runs cost` sums what is stored
        stored = ws.runs.get(run.id)
        assert stored.usage["cpu"].cost_usd == pytest.approx(usage.cost_usd)
        assert stored.params["trainer.market"] == "on_demand"
        (spend,) = ws.runs.spend("experiment")
        assert spend.cost_usd == pytest.approx(usage.cost_usd)
    # a later price change leaves what was stored alone
    (root / "conveyor.toml").write_text(
        (root / "conveyor.toml").read_text().replace(str(TEN_X_CPU), "0.0")
    )
    with Workspace.open(root) as ws:
        assert ws.prices.price("cpu") == 0.0
        assert ws.runs.spend("experiment")[0].cost_usd == pytest.approx(usage.cost_usd)


def test_an_explicit_price_table_beats_the_workspace(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from conveyor.training import fit

    with workspace(tmp_path / "ws", f"[prices.on_demand]\ncpu = {TEN_X_CPU}\n") as ws:
        model = torch.nn.Linear(8, 2)
        mine = PriceTable().with_overrides({"spot": {"cpu": 1.0}})
        result = fit(
            model,
            Steps(),
            optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
            workspace=ws,
            device="cpu",
            prices=mine,
            market="spot",
        )
    usage = result.usage
    assert usage is not None and usage.market == "spot"
    assert usage.cost_usd == pytest.approx(1.0 * usage.device_seconds / 3600)


def test_job_costs_follow_the_workspace_prices(tmp_path: Path) -> None:
    with workspace(tmp_path / "ws", f"[prices.on_demand]\ncpu = {TEN_X_CPU}\n") as ws:
        job = ws.jobs.submit(command="true", cpus=1, time_limit_s=30)
        ws.jobs.run_scheduler("local", until_idle=True, poll_s=0.05)
        done = ws.jobs.get(job.id)
        assert done.state == "succeeded" and done.device_seconds > 0
        default_cost = done.cost_usd(PriceTable())
        assert default_cost is not None and default_cost > 0
        assert done.cost_usd() == pytest.approx(10 * default_cost)
        assert done.as_dict()["cost_usd"] == pytest.approx(10 * default_cost)
        assert "prices" not in done.as_dict()
        assert ws.jobs.list()[0].cost_usd() == pytest.approx(10 * default_cost)
