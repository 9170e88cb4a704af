"""The training loop: device, precision, accumulation, clipping, eval, early stopping,
DDP, asynchronous checkpoints, preemption and exact resume, in one small class.

`fit(model, loader, optimizer=...)` is the whole API for most users; `Trainer` is the
same thing split into construction and `.fit()`. Hooks are described in hooks.py.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import nullcontext
from dataclasses import replace
from typing import Any, Protocol

import torch

from conveyor.compute.cost import UsageMeter
from conveyor.core.errors import ConveyorError, TrainingError
from conveyor.training import distributed, hooks
from conveyor.training.checkpoint import CheckpointStore, HasStores, check_run_id
from conveyor.training.config import Status, TrainConfig, TrainResult
from conveyor.training.device import pick_device, pick_precision, to_device
from conveyor.training.metrics import Evaluation, f1, per_class_accuracy
from conveyor.training.preempt import PreemptionGuard
from conveyor.training.reporting import Reporter, RunLike, log
from conveyor.training.snapshot import (
    Snapshot,
    capture_model,
    capture_optimizer,
    capture_rng,
    check_json,
    restore_optimizer,
    restore_rng,
)
from conveyor.training.writer import CheckpointWriter


class ResumableLoader(Protocol):
    """A Conveyor loader (or anything iterable that saves and restores its position)."""

    def __iter__(self) -> Any: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class Trainer:
    """Trains `model` on `train` batches with `optimizer`; see `fit` for the arguments."""

    def __init__(
        self,
        model: torch.nn.Module,
        train: Iterable[Any],
        *,
        optimizer: torch.optim.Optimizer,
        loss_fn: Callable[[Any, Any], torch.Tensor] | None = None,
        scheduler: Any = None,
        eval: Iterable[Any] | None = None,
        batch_fn: Callable[[Any], tuple[Any, Any]] | None = None,
        step_fn: Callable[[torch.nn.Module, Any], torch.Tensor] | None = None,
        eval_fn: Callable[[torch.nn.Module, Any, torch.device], Mapping[str, float]] | None = None,
        run: RunLike | None = None,
        workspace: HasStores | None = None,
        checkpoints: CheckpointStore | None = None,
        run_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        config: TrainConfig | None = None,
        end_run: bool = True,
    ) -> None:
        self.config = (config or TrainConfig()).priced(getattr(workspace, "prices", None))
        self.model, self.train_loader, self.eval_loader = model, train, eval
        self.optimizer, self.scheduler = optimizer, scheduler
        self.loss_fn = loss_fn or hooks.default_loss_fn
        self.batch_fn = batch_fn or hooks.default_batch_fn
        self.step_fn, self.eval_fn = step_fn, eval_fn
        self.run, self.end_run, self.user_metadata = run, end_run, dict(metadata or {})
        self.store = checkpoints or (CheckpointStore.of(workspace) if workspace else None)
        self.run_id = check_run_id(run.id if run is not None else run_id or uuid.uuid4().hex)
        self._check_arguments()
        self.step = self.epoch = self.steps_run = 0
        self.best: float | None = None
        self.bad_evals = 0
        self.metrics: dict[str, float] = {}
        self.per_class: dict[str, list[float]] = {}
        self._eval_step = self._checkpoint_step = -1

    def _check_arguments(self) -> None:
        if not isinstance(self.model, torch.nn.Module):
            raise TrainingError(f"model is a {type(self.model).__name__}", "pass a torch.nn.Module")
        if not isinstance(self.optimizer, torch.optim.Optimizer):
            raise TrainingError("optimizer is not a torch optimizer", "pass torch.optim.AdamW(...)")
        wants = self.config.checkpoint_every or self.config.checkpoint_minutes
        if wants and self.store is None:
            raise TrainingError(
                "checkpoints were asked for but there is nowhere to write them",
                "pass workspace=ws (or checkpoints=CheckpointStore(...))",
            )
        if self.store is not None and not callable(getattr(self.train_loader, "state_dict", None)):
            raise TrainingError(
                "the train loader has no state_dict(), so a checkpoint could not resume it",
                "use a Conveyor loader: ws.datasets.get(...).loader(...)",
            )
        if self.config.early_stopping and self.eval_loader is None:
            raise TrainingError("early stopping needs an eval loader", "pass eval=...")

    # -- the run ---------------------------------------------------------------------------

    def fit(self) -> TrainResult:
        """Train until epochs/max_steps, early stopping or SIGTERM; returns how it ended."""
        self.job = distributed.join(prefer_cuda=self.config.device in (None, "cuda"))
        distributed.check_loader(self.train_loader, self.job)
        self.device = pick_device(self.config.device, self.job.local_rank)
        self.precision = pick_precision(self.device, self.config.precision)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision.scaler)
        self.model.to(self.device)
        self.report = Reporter(self.run, self.job.is_main)
        self.writer = (
            CheckpointWriter(self.store, self.run_id, self._checkpoint_metadata)
            if self.store is not None and self.job.is_main
            else None
        )
        try:
            resumed = self._resume()
        except BaseException:
            if self.writer is not None:
                self.writer.close()
            self.report.status("failed", self.end_run)
            self.job.close()
            raise
        self.wrapped = distributed.wrap(self.model, self.job, self.device)
        self.meter = UsageMeter(
            self._device_name(), self.job.world, self.config.prices, self.config.market
        ).start()
        if not resumed:
            params = {**self.config.params(), "world_size": self.job.world}
            self.report.params({f"trainer.{k}": v for k, v in params.items()})
        started, status, failed = time.perf_counter(), "failed", True
        try:
            with PreemptionGuard() as self.guard:
                status = self._loop()
            failed = False
        finally:
            self.seconds = time.perf_counter() - started
            self._finish(status, failed)
        return self._result(status)

    def _loop(self) -> Status:
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        self._window_loss = torch.zeros((), device=self.device)
        self._window_batches, self._window_start = 0, time.perf_counter()
        self._last_checkpoint = time.monotonic()
        while not self._limits_reached():
            micro = 0
            for batch in _batches(self.train_loader):
                micro += 1
                self._forward_backward(batch, sync=micro == self.config.accumulate)
                if micro == self.config.accumulate:
                    micro = 0
                    if outcome := self._optimizer_step():
                        return outcome
            self.epoch += 1
            if micro and (outcome := self._optimizer_step()):  # the epoch's last few batches
                return outcome
            if self.config.eval_every is None and self._evaluate():
                return "stopped_early"
        return "finished"

    def _limits_reached(self) -> bool:
        c = self.config
        return (c.epochs is not None and self.epoch >= c.epochs) or (
            c.max_steps is not None and self.step >= c.max_steps
        )

    def _forward_backward(self, batch: Any, sync: bool) -> None:
        step = self.step + 1
        wrapped: Any = self.wrapped
        ddp_sync = nullcontext() if sync or not self.job.enabled else wrapped.no_sync()
        with ddp_sync:
            with self.precision.autocast(self.device):
                loss = hooks.check_loss(self._loss(self.wrapped, batch, step)[0], step)
            scaled: Any = self.scaler.scale(loss / self.config.accumulate)
            scaled.backward()
        self._window_loss += loss.detach().float()
        self._window_batches += 1

    def _loss(self, model: torch.nn.Module, batch: Any, step: int | None) -> tuple[Any, Any, Any]:
        """(loss, outputs, target); outputs and target are None with a step_fn."""
        if self.step_fn is not None:
            batch = to_device(batch, self.device)
            return hooks.call("step_fn", self.step_fn, model, batch, step=step), None, None
        inputs, target = hooks.call("batch_fn", self.batch_fn, batch, step=step)
        inputs, target = to_device(inputs, self.device), to_device(target, self.device)
        outputs = hooks.call("the model's forward", model, inputs, step=step)
        return hooks.call("loss_fn", self.loss_fn, outputs, target, step=step), outputs, target

    def _optimizer_step(self) -> Status | None:
        """One optimizer step, then everything that happens between steps."""
        if self.config.clip_grad_norm is not None:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        if self.scheduler is not None and not _on_plateau(self.scheduler):
            self.scheduler.step()
        self.step += 1
        self.steps_run += 1
        if self.step % self.config.log_every == 0:
            self._log_train()
        stop = False
        if self.config.eval_every and self.step % self.config.eval_every == 0:
            stop = self._evaluate()
        if self.job.any(self.guard.requested, self.device):
            self._checkpoint(wait=True)
            self.job.barrier()  # no rank exits before rank 0's checkpoint is whole
            return "preempted"
        if self._checkpoint_due():
            self._checkpoint(wait=False)
        if stop:
            return "stopped_early"
        if self.config.max_steps is not None and self.step >= self.config.max_steps:
            return "finished"
        return None

    def _log_train(self) -> None:
        loss = float(self._window_loss) / max(self._window_batches, 1)
        elapsed = time.perf_counter() - self._window_start
        lr = float(self.optimizer.param_groups[0]["lr"])
        rate = self.config.log_every / elapsed if elapsed else 0.0
        self.report.metrics(
            {"loss": loss, "lr": lr, "steps_per_second": rate}, self.step, "train.step"
        )
        self._window_loss.zero_()
        self._window_batches, self._window_start = 0, time.perf_counter()

    # -- evaluation ------------------------------------------------------------------------

    def _evaluate(self) -> bool:
        """Evaluate, report, step a plateau scheduler; True when early stopping says stop."""
        if self.eval_loader is None:
            return False
        self.model.eval()
        gpus = [self.device] if self.device.type == "cuda" else []
        try:  # evaluating leaves the training random streams as they were
            with torch.no_grad(), torch.random.fork_rng(gpus), self.precision.autocast(self.device):
                self.metrics = self._eval_metrics(self.eval_loader)
        finally:
            self.model.train()
        self._eval_step = self.step
        named = {f"val_{k}": v for k, v in self.metrics.items()}
        self.report.metrics(named, self.step, "train.eval")
        if self.scheduler is not None and _on_plateau(self.scheduler):
            self.scheduler.step(self.metrics.get("loss", next(iter(self.metrics.values()), 0.0)))
        rule = self.config.early_stopping
        if rule is None:
            return False
        if rule.metric not in self.metrics:
            raise TrainingError(
                f"early stopping watches {rule.metric!r}, but evaluation gave "
                f"{', '.join(self.metrics) or 'nothing'}",
                "set EarlyStopping(metric=...) to one of those",
            )
        value = self.metrics[rule.metric]
        if rule.improved(value, self.best):
            self.best, self.bad_evals = value, 0
        else:
            self.bad_evals += 1
        return self.bad_evals >= rule.patience

    def _eval_metrics(self, loader: Iterable[Any]) -> dict[str, float]:
        if self.eval_fn is not None:
            given = hooks.call("eval_fn", self.eval_fn, self.model, loader, self.device)
            return self._average_over_ranks(given)
        result = Evaluation.empty()
        for batch in loader:
            loss, outputs, target = self._loss(self.model, batch, None)
            if outputs is None:  # a step_fn gives only the loss: the mean over batches
                result.add(loss, torch.zeros(0), torch.zeros(1))
            else:
                result.add(loss, outputs.float(), target)
        self._sum_over_ranks(result)
        if result.confusion is not None:
            self.per_class = {
                "accuracy": per_class_accuracy(result.confusion),
                "f1": f1(result.confusion),
            }
        return result.metrics()

    def _sum_over_ranks(self, result: Evaluation) -> None:
        if not self.job.enabled:
            return
        classes = torch.tensor(
            [0 if result.confusion is None else result.confusion.shape[0]], device=self.device
        )
        torch.distributed.all_reduce(classes, op=torch.distributed.ReduceOp.MAX)
        n = int(classes.item())
        if n and result.confusion is None:  # this rank saw no eval batch
            result.confusion = torch.zeros((n, n), dtype=torch.int64)
        for t in result.tensors():
            t.copy_(self.job.sum_(t.to(self.device)).cpu())

    def _average_over_ranks(self, given: Mapping[str, Any]) -> dict[str, float]:
        try:
            metrics = {str(k): float(v) for k, v in given.items()}
        except (TypeError, ValueError, AttributeError) as e:
            raise TrainingError(f"eval_fn returned {given!r}", "return {'name': number}") from e
        if self.job.enabled:
            values = torch.tensor(list(metrics.values()), dtype=torch.float64, device=self.device)
            self.job.sum_(values)
            metrics = dict(zip(metrics, (values / self.job.world).tolist(), strict=True))
        return metrics

    # -- checkpoints -----------------------------------------------------------------------

    def _checkpoint_due(self) -> bool:
        c = self.config
        by_steps = c.checkpoint_every is not None and self.step % c.checkpoint_every == 0
        by_time = c.checkpoint_minutes is not None and (
            time.monotonic() - self._last_checkpoint >= c.checkpoint_minutes * 60
        )
        return by_steps or by_time

    def _checkpoint(self, wait: bool) -> None:
        self._last_checkpoint = time.monotonic()
        if self.writer is not None and self._checkpoint_step != self.step:
            self._checkpoint_step = self.step
            self.writer.save(self._capture, wait=wait)

    def _capture(self) -> Snapshot:
        optimizer, optimizer_tensors = capture_optimizer(self.optimizer)
        rng, rng_tensors = capture_rng()
        loader: Any = self.train_loader
        state = {
            "step": self.step,
            "epoch": self.epoch,
            "optimizer": optimizer,
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict(),
            "loader": loader.state_dict(),
            "rng": rng,
            "early_stopping": {"best": self.best, "bad_evals": self.bad_evals},
            "metrics": self.metrics,
            "world_size": self.job.world,
        }
        check_json("trainer", state)
        return Snapshot(capture_model(self.model), {**optimizer_tensors, **rng_tensors}, state)

    def _checkpoint_metadata(self) -> dict[str, Any]:
        return {
            **self.user_metadata,
            "torch": torch.__version__,
            "device": str(self.device),
            "precision": self.precision.name,
            "metrics": dict(self.metrics),
        }

    def _resume(self) -> bool:
        """Load the run's latest checkpoint (every rank reads it); False when there is none."""
        if self.store is None or not self.config.resume:
            return False
        info = self.store.latest(self.run_id)
        if info is None:
            return False
        snapshot = self.store.load(info)
        state = snapshot.state
        try:
            self.model.load_state_dict(snapshot.model)
            restore_optimizer(self.optimizer, state["optimizer"], snapshot.tensors)
        except (RuntimeError, ValueError, KeyError) as e:
            raise TrainingError(
                f"checkpoint {info.manifest[:12]}… of run {self.run_id} does not fit this "
                f"model/optimizer ({e})",
                "resume with the same model and optimizer, or start a new run id",
            ) from e
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        loader: Any = self.train_loader
        loader.load_state_dict(state["loader"])
        self.step, self.epoch = int(state["step"]), int(state["epoch"])
        self.best = state["early_stopping"]["best"]
        self.bad_evals = int(state["early_stopping"]["bad_evals"])
        self.metrics = dict(state.get("metrics") or {})
        self._checkpoint_step = self._eval_step = self.step
        restore_rng(state["rng"], snapshot.tensors)
        if self.job.rank:  # ranks keep distinct dropout streams: seeded from (step, rank)
            torch.manual_seed(self.step * 100_003 + self.job.rank)
        if self.writer is not None:
            self.writer.last = info
        if self.job.is_main:
            log.info("train.resumed", run_id=self.run_id, step=self.step, manifest=info.manifest)
        return True

    # -- the end ---------------------------------------------------------------------------

    def _finish(self, status: str, failed: bool) -> None:
        try:
            if not failed and status != "preempted":
                if self.eval_loader is not None and self._eval_step != self.step:
                    self._evaluate()
                self._checkpoint(wait=False)
            if self.writer is not None:
                self.writer.close()
        except ConveyorError:
            if not failed:
                raise
        finally:
            self.usage = self.meter.stop()
            self.report.usage(self.usage)
            ended = "failed" if failed else status
            # a preempted run ends as "preempted"; ws.runs.resume(run_id) reopens it
            self.report.status("finished" if ended == "stopped_early" else ended, self.end_run)
            self.job.close()

    def _result(self, status: Status) -> TrainResult:
        last = self.writer.last if self.writer is not None else None
        return TrainResult(
            status=status,
            run_id=self.run_id,
            step=self.step,
            epoch=self.epoch,
            device=str(self.device),
            metrics=dict(self.metrics),
            per_class=dict(self.per_class),
            checkpoint=last.manifest if last is not None else None,
            usage=self.usage,
            checkpoint_waits=list(self.writer.waits) if self.writer is not None else [],
            seconds=self.seconds,
            steps_run=self.steps_run,
        )

    def _device_name(self) -> str:
        if self.device.type == "cuda":
            return torch.cuda.get_device_name(self.device)
        return self.device.type


def _batches(loader: Iterable[Any]) -> Iterator[Any]:
    """The loader's batches, without its start-up draw from torch's global generator.

    A torch DataLoader takes a worker seed from the global generator when it starts; a
    resumed run starts it at another step than an uninterrupted one, so that draw would
    shift every later dropout mask. Starting it inside fork_rng keeps resume exact.
    """
    iterator = iter(loader)
    with torch.random.fork_rng(devices=[]):
        first = next(iterator, _END)
    if first is _END:
        return
    yield first
    yield from iterator


_END = object()


def _on_plateau(scheduler: Any) -> bool:
    return isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)


def fit(
    model: torch.nn.Module,
    train: Iterable[Any],
    *,
    optimizer: torch.optim.Optimizer,
    config: TrainConfig | None = None,
    **options: Any,
) -> TrainResult:
    """Train a model on Conveyor loaders; returns a TrainResult.

    Arguments beyond the model, the train loader and the optimizer: `loss_fn`,
    `scheduler` (stepped after every optimizer step; ReduceLROnPlateau after every eval),
    `eval` (a loader), the hooks `batch_fn`, `step_fn`, `eval_fn` (hooks.py), `run` (a
    tracked run or None), `workspace` (where checkpoints go, and whose price table costs
    the run unless `prices=` is given), `run_id`, `metadata`,
    `end_run`; and any TrainConfig field (`max_steps=100, checkpoint_every=50`...).
    """
    trainer_args = {
        "loss_fn", "scheduler", "eval", "batch_fn", "step_fn", "eval_fn", "run",
        "workspace", "checkpoints", "run_id", "metadata", "end_run",
    }  # fmt: skip
    fields = set(TrainConfig.__dataclass_fields__)
    unknown = set(options) - trainer_args - fields
    if unknown:
        raise TrainingError(
            f"fit() got unknown argument(s) {', '.join(sorted(unknown))}",
            "see help(conveyor.training.fit) for the arguments it takes",
        )
    settings = {k: v for k, v in options.items() if k in fields}
    config = replace(config, **settings) if config is not None else TrainConfig(**settings)
    rest = {k: v for k, v in options.items() if k in trainer_args}
    return Trainer(model, train, optimizer=optimizer, config=config, **rest).fit()
