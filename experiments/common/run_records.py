"""What a run directory records of its run, and the check that a run
directory about to be reused or resumed holds the same experiment:
`config.json` is the run's settings and its model's resolved arguments;
a run with other settings (but for `_BOOKKEEPING`: where and how it runs)
is a `SettingsConflict`.
"""

import csv
import json
import os


def write_json(path, payload):
    """Writes `payload` as JSON to `path` atomically (a reader never sees a
    half-written file)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=2, sort_keys=True, default=str)
    os.replace(tmp, path)


def train_time(metrics_path):
    """Sums epoch times in metrics.csv, counting a resumed epoch once."""
    if not os.path.exists(metrics_path):
        return 0.0
    per_epoch = {}
    with open(metrics_path) as f:
        for row in csv.DictReader(f):
            if row.get("epoch_time_s"):
                per_epoch[row["epoch"]] = float(row["epoch_time_s"])
    return sum(per_epoch.values())


# Settings that change where or how a run is done, not what it computes: a
# run directory written under other values of these holds the same
# experiment.
_BOOKKEEPING = (
    "checkpoint_minutes",
    "data_dir",
    "download",
    "fresh_process",
    "models",
    "overwrite",
    "strategy",
    "verbose",
    "virtual_devices",
    "wandb_mode",
    "workdir",
)


def run_record(config, name, resolved):
    """What `config.json` holds, as JSON values (tuples become lists)."""
    record = {
        **config.to_dict(),
        "model": name,
        "model_config": resolved.to_dict(),
    }
    return json.loads(json.dumps(record, sort_keys=True, default=str))


class SettingsConflict(ValueError):
    """A run directory holds a run made with other settings."""


def check_same_experiment(config, name, resolved):
    """Refuses to reuse or resume a run directory of another experiment.

    A model's finished results are reused and an interrupted run resumes;
    either is only sound when the saved run had the same settings (task
    options, steps, model arguments, ...). Otherwise results that cannot be
    compared would share one comparison table.

    Raises:
        SettingsConflict: a `ValueError` naming each differing setting with
            both values. Nothing on disk is touched.
    """
    path = os.path.join(config.run_dir(name), "config.json")
    if config.overwrite or not os.path.exists(path):
        return
    with open(path) as f:
        saved = json.load(f)
    present = run_record(config, name, resolved)
    differences = [
        f"{key}: saved {saved.get(key)!r}, now {present.get(key)!r}"
        for key in sorted(set(saved) | set(present))
        if key not in _BOOKKEEPING and saved.get(key) != present.get(key)
    ]
    if differences:
        raise SettingsConflict(
            f"{config.run_dir(name)} holds a run of {name!r} with other "
            f"settings ({'; '.join(differences)}). Nothing was changed. "
            "Use another --workdir, or --overwrite to train it again with "
            "these settings."
        )
