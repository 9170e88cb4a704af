"""`conveyor train ...`: recipes that train a model on a dataset version, no code needed.

torch is imported inside the commands, so `conveyor --help` stays fast. A run stopped by
SIGTERM (spot preemption) exits with 75 after writing a checkpoint; run the same command
with `--resume RUN_ID` to continue it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from conveyor.cli import output
from conveyor.cli.state import state

if TYPE_CHECKING:
    from conveyor.training.recipes.common import RecipeOptions, RecipeReport

app = typer.Typer(help="Train models from dataset versions with ready-made recipes.")

Data = Annotated[str, typer.Option("--data", "-d", help="Dataset version: NAME@vN or NAME@latest.")]
Epochs = Annotated[int, typer.Option(help="Passes over the train split.")]
BatchSize = Annotated[int, typer.Option("--batch-size", help="Samples per step.")]
Lr = Annotated[float, typer.Option("--lr", help="AdamW learning rate.")]
MaxSteps = Annotated[int | None, typer.Option("--max-steps", help="Stop after this many steps.")]
CheckpointEvery = Annotated[
    int | None,
    typer.Option(
        "--checkpoint-every", help="Checkpoint every N steps (one is always written at the end)."
    ),
]
EvalEvery = Annotated[
    int | None, typer.Option("--eval-every", help="Evaluate every N steps (default: each epoch).")
]
Patience = Annotated[
    int | None, typer.Option(help="Stop early after N evaluations without a better val loss.")
]
Device = Annotated[
    str | None, typer.Option(help="cpu, cuda, cuda:1, mps (default: best available).")
]
Workers = Annotated[int, typer.Option(help="Loader worker processes.")]
Seed = Annotated[int, typer.Option(help="Seed for weights and shuffling.")]
Resume = Annotated[
    str | None, typer.Option("--resume", help="Continue this run id from its latest checkpoint.")
]
Experiment = Annotated[
    str | None, typer.Option(help="Experiment to file the run under (default: the recipe).")
]
Name = Annotated[str | None, typer.Option(help="Run name.")]
ModelName = Annotated[
    str | None,
    typer.Option(
        "--model-name", help="Register the model under this name (default: DATASET-RECIPE)."
    ),
]
Json = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def _options(**values: Any) -> RecipeOptions:
    from conveyor.training.recipes.common import RecipeOptions

    return RecipeOptions(**values)


@app.command("image-classifier")
def image_classifier(
    data: Data,
    epochs: Epochs = 10,
    batch_size: BatchSize = 64,
    lr: Lr = 1e-3,
    max_steps: MaxSteps = None,
    checkpoint_every: CheckpointEvery = None,
    eval_every: EvalEvery = None,
    patience: Patience = None,
    image_size: Annotated[
        int, typer.Option(help="Resize to this square size when sizes differ.")
    ] = 32,
    device: Device = None,
    workers: Workers = 0,
    seed: Seed = 0,
    resume: Resume = None,
    experiment: Experiment = None,
    name: Name = None,
    model_name: ModelName = None,
    as_json: Json = False,
) -> None:
    """A small CNN over the image column; classes are the version's labels."""
    from conveyor.training.recipes.image import train_image_classifier

    options = _options(
        data=data, epochs=epochs, batch_size=batch_size, lr=lr, max_steps=max_steps,
        checkpoint_every=checkpoint_every, eval_every=eval_every, patience=patience,
        device=device, workers=workers, seed=seed, resume=resume, experiment=experiment, name=name,
        model_name=model_name,
    )  # fmt: skip
    with state.open_workspace() as ws:
        report = train_image_classifier(ws, options, image_size=image_size)
    _finish(report, as_json)


@app.command()
def tabular(
    data: Data,
    target: Annotated[str, typer.Option(help="The column to predict (classes).")],
    features: Annotated[
        str | None, typer.Option(help="Comma-separated numeric columns (default: all numeric).")
    ] = None,
    epochs: Epochs = 50,
    batch_size: BatchSize = 32,
    lr: Lr = 3e-3,
    max_steps: MaxSteps = None,
    checkpoint_every: CheckpointEvery = None,
    eval_every: EvalEvery = None,
    patience: Patience = None,
    device: Device = None,
    workers: Workers = 0,
    seed: Seed = 0,
    resume: Resume = None,
    experiment: Experiment = None,
    name: Name = None,
    model_name: ModelName = None,
    as_json: Json = False,
) -> None:
    """An MLP over numeric columns, standardised with train-split statistics."""
    from conveyor.training.recipes.tabular import train_tabular

    options = _options(
        data=data, epochs=epochs, batch_size=batch_size, lr=lr, max_steps=max_steps,
        checkpoint_every=checkpoint_every, eval_every=eval_every, patience=patience,
        device=device, workers=workers, seed=seed, resume=resume, experiment=experiment, name=name,
        model_name=model_name,
    )  # fmt: skip
    chosen = [f.strip() for f in features.split(",") if f.strip()] if features else None
    with state.open_workspace() as ws:
        report = train_tabular(ws, options, target=target, features=chosen)
    _finish(report, as_json)


@app.command("text-classifier")
def text_classifier(
    data: Data,
    text_column: Annotated[
        str, typer.Option("--text-column", help="The column holding the text.")
    ] = "text",
    target: Annotated[str, typer.Option(help="The column to predict (classes).")] = "label",
    epochs: Epochs = 20,
    batch_size: BatchSize = 32,
    lr: Lr = 3e-3,
    max_steps: MaxSteps = None,
    checkpoint_every: CheckpointEvery = None,
    eval_every: EvalEvery = None,
    patience: Patience = None,
    device: Device = None,
    workers: Workers = 0,
    seed: Seed = 0,
    resume: Resume = None,
    experiment: Experiment = None,
    name: Name = None,
    model_name: ModelName = None,
    as_json: Json = False,
) -> None:
    """A small head on offline MiniLM sentence embeddings (needs the `text` extra)."""
    from conveyor.training.recipes.text import train_text_classifier

    options = _options(
        data=data, epochs=epochs, batch_size=batch_size, lr=lr, max_steps=max_steps,
        checkpoint_every=checkpoint_every, eval_every=eval_every, patience=patience,
        device=device, workers=workers, seed=seed, resume=resume, experiment=experiment, name=name,
        model_name=model_name,
    )  # fmt: skip
    with state.open_workspace() as ws:
        report = train_text_classifier(ws, options, text_column=text_column, target=target)
    _finish(report, as_json)


def _finish(report: RecipeReport, as_json: bool) -> None:
    if as_json:
        output.print_json(report.as_dict())
    else:
        _summary(report)
    if report.exit_code:
        raise typer.Exit(report.exit_code)


def _summary(r: RecipeReport) -> None:
    m = r.metrics
    headline = {
        "finished": "[green]Trained[/green]",
        "stopped_early": "[green]Trained[/green] (stopped early)",
    }
    output.print_line(
        f"{headline.get(r.status, '[yellow]Preempted[/yellow]')} {r.recipe} on {r.data}: "
        f"run {r.run_id}, {r.step} steps, {r.epoch} epochs"
    )
    if r.status == "preempted":
        output.print_line(
            f"  checkpoint written; continue with `conveyor train {r.recipe} --data {r.data} "
            f"--resume {r.run_id}`"
        )
        return
    if m:
        output.print_line(
            f"  {r.eval_split}: accuracy {m.get('accuracy', 0):.3f}, macro F1 "
            f"{m.get('f1_macro', 0):.3f}, loss {m.get('loss', 0):.4f}"
        )
    if r.per_class:
        output.print_table(
            f"Per class ({r.eval_split})",
            ["class", "accuracy", "F1"],
            [(p["class"], f"{p['accuracy']:.3f}", f"{p['f1']:.3f}") for p in r.per_class],
        )
    u = r.usage
    if u:
        energy = output.human_energy(u["energy_kwh"]) + (
            "" if u.get("energy_measured") else " (est.)"
        )
        output.print_line(
            f"  used {output.human_seconds(u['device_seconds'])} of {u['device']} time, {energy}, "
            f"{output.human_cost(u.get('cost_usd'))} ({u['market']})"
        )
    if r.model:
        output.print_line(f"  registered [bold]{r.model}[/bold] (`conveyor models show {r.model}`)")
    if r.checkpoint:
        output.print_line(
            f"  checkpoint {r.checkpoint[:12]}… (`conveyor.training.CheckpointStore`)"
        )
    if not r.tracked:
        output.print_line("  [yellow]not tracked[/yellow]: this workspace has no run tracking")
