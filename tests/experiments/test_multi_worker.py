"""`--strategy=multi_worker`: two worker processes on this machine (ports
chosen free, a TF_CONFIG each) train one model together through the
synthetic binary; a worker killed mid-run leaves checkpoints that the
restarted job resumes from. `large`: about a minute of processes."""

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from tests.experiments.binaries import ROOT

pytestmark = [
    pytest.mark.large,
    pytest.mark.skipif(
        keras.backend.backend() != "tensorflow", reason="tf.distribute"
    ),
]

TIMEOUT = 300


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _start_workers(workdir, steps, ports):
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    command = [
        sys.executable,
        "-m",
        "experiments.synthetic",
        "--model=gpt",
        "--task=mqar",
        "--num_kv_pairs=2",
        "--train_seq_len=16,16",
        "--eval_seq_len=16,16",
        "--num_train_examples=64",
        "--num_eval_examples=8",
        "--preset=tiny",
        f"--steps={steps}",
        "--eval_every=2",
        "--batch_size=8",
        "--strategy=multi_worker",
        "--wandb_mode=disabled",
        f"--workdir={workdir}",
    ]
    workers = []
    for index in range(len(ports)):
        config = {
            "cluster": cluster,
            "task": {"type": "worker", "index": index},
        }
        log = open(os.path.join(workdir, f"worker{index}.log"), "a")
        workers.append(
            subprocess.Popen(
                command,
                cwd=ROOT,
                env={
                    **os.environ,
                    "PYTHONPATH": ROOT,
                    "TF_CONFIG": json.dumps(config),
                },
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    return workers


def _wait(workers, workdir):
    try:
        codes = [worker.wait(timeout=TIMEOUT) for worker in workers]
    finally:
        for worker in workers:
            worker.kill()
    for index, code in enumerate(codes):
        with open(os.path.join(workdir, f"worker{index}.log")) as f:
            assert code == 0, f.read()[-3000:]


def _epochs(run_dir):
    path = os.path.join(run_dir, "metrics.csv")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def test_two_workers_train_one_model(tmp_path):
    workers = _start_workers(str(tmp_path), 6, _free_ports(2))
    _wait(workers, str(tmp_path))
    chief = tmp_path / "mqar" / "gpt"
    other = tmp_path / ".worker1" / "mqar" / "gpt"
    results = json.loads((chief / "results.json").read_text())
    assert results["replicas"] == 2
    assert results["train_steps"] == 6
    # both workers hold the same weights at the end
    first = keras.saving.load_model(chief / "model.keras").get_weights()
    second = keras.saving.load_model(other / "model.keras").get_weights()
    for a, b in zip(first, second, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_a_killed_worker_resumes_from_its_checkpoint(tmp_path):
    workdir = str(tmp_path)
    run_dir = os.path.join(workdir, "mqar", "gpt")
    steps = 200  # 100 epochs of 2 steps: the kill lands mid-run
    workers = _start_workers(workdir, steps, _free_ports(2))
    deadline = time.time() + TIMEOUT
    while len(_epochs(run_dir)) < 3 and time.time() < deadline:
        assert all(w.poll() is None for w in workers), "a worker ended early"
        time.sleep(0.2)
    workers[1].send_signal(signal.SIGKILL)
    workers[1].wait()
    # the chief cannot go on without its peer: it fails or waits for it
    try:
        workers[0].wait(timeout=30)
    except subprocess.TimeoutExpired:
        workers[0].kill()
        workers[0].wait()
    done = _epochs(run_dir)
    assert 3 <= len(done) < steps // 2
    assert not os.path.exists(os.path.join(run_dir, "results.json"))

    # the same command, on new ports, resumes both from their checkpoints
    workers = _start_workers(workdir, steps, _free_ports(2))
    _wait(workers, workdir)
    epochs = _epochs(run_dir)
    resumed = epochs[len(done) :]
    print(
        f"killed after {len(done)} epochs of 2 steps; resumed at epoch "
        f"{resumed[0]}, finished at {resumed[-1]}"
    )
    assert resumed[0] > 0, epochs  # not trained again from the start
    assert resumed[-1] == steps // 2 - 1
    results = json.loads(open(os.path.join(run_dir, "results.json")).read())
    assert results["train_steps"] == steps
