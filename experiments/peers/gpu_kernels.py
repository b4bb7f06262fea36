r"""The peers' side of `python -m experiments.benchmark accelerator`.

Runs under any Python with PyTorch (never a dependency of kerasseq):

    python experiments/peers/gpu_kernels.py --spec=accelerator_delta_rule.json

The spec (written by `experiments/common/accelerator_benchmark.py`) names
one kernel, its shapes, dtype, passes and repeats; this script times the
peer of that kernel the way kerasseq's side is timed (`timing.py`), in the
peer's own layout, on CUDA when there is one:

- selective_scan: mamba-ssm's `selective_scan_fn` (u, delta `(B, D, T)`,
  B and C `(B, N, T)`; A, D and delta_bias float32; softplus on delta);
- delta_rule: fla's `chunk_delta_rule` (`(B, T, H, K)`, unit-norm keys);
- linear_attention: fla's `chunk_linear_attn(normalize=True)` on
  non-negative queries and keys;
- softmax_attention: `torch.nn.functional.scaled_dot_product_attention`
  (`(B, H, T, K)`, causal).

The backward pass is `torch.autograd.grad` of `sum(y^2)` with respect to
every input, as on kerasseq's side. A peer that is not installed or needs
a GPU this machine lacks gives a `skipped` row saying why. It prints one
JSON line: `{"device": ..., "torch": ..., "rows": [...]}`.
"""

import argparse
import json
import time

if __package__:
    from experiments.peers.timing import timed
else:  # run as a script, under a Python that may lack kerasseq
    from timing import timed

IMPLEMENTATIONS = {
    "selective_scan": "mamba_ssm selective_scan_fn",
    "delta_rule": "fla chunk_delta_rule",
    "linear_attention": "fla chunk_linear_attn",
    "softmax_attention": "torch scaled_dot_product_attention",
}


def _peer(torch, kernel, shape, dtype, device):
    """`(function(*inputs) -> output, inputs)`, or raises `ImportError`
    (not installed) / `RuntimeError` (needs CUDA)."""
    b, t = shape["batch"], shape["seq_len"]

    def normal(*dims, scale=1.0, kind=dtype):
        return (
            torch.randn(*dims, device=device, dtype=torch.float32)
            .mul(scale)
            .to(kind)
        )

    if kernel == "softmax_attention":
        h, k = shape["heads"], shape["key"]
        inputs = [normal(b, h, t, k) for _ in range(3)]
        attend = torch.nn.functional.scaled_dot_product_attention
        return lambda q, k, v: attend(q, k, v, is_causal=True), inputs
    if device != "cuda":
        raise RuntimeError("needs a CUDA GPU (Triton/CUDA kernels)")
    if kernel == "selective_scan":
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

        d, n = shape["dim"], shape["state"]
        f32 = torch.float32
        inputs = [
            normal(b, d, t),
            normal(b, d, t, scale=0.5),
            -torch.exp(normal(d, n, scale=0.5, kind=f32)),
            normal(b, n, t),
            normal(b, n, t),
            normal(d, kind=f32),
            normal(d, scale=0.1, kind=f32),
        ]

        def scan(u, delta, a, bm, c, d_skip, bias):
            return selective_scan_fn(
                u, delta, a, bm, c, d_skip, None, bias, delta_softplus=True
            )

        return scan, inputs
    h, k, v = shape["heads"], shape["key"], shape["value"]
    if kernel == "delta_rule":
        from fla.ops.delta_rule import chunk_delta_rule

        keys = torch.nn.functional.normalize(normal(b, t, h, k), dim=-1)
        beta = torch.rand(b, t, h, device=device).to(dtype)
        inputs = [normal(b, t, h, k), keys, normal(b, t, h, v), beta]
        return lambda *x: chunk_delta_rule(*x)[0], inputs
    from fla.ops.linear_attn import chunk_linear_attn

    inputs = [normal(b, t, h, k).abs(), normal(b, t, h, k).abs()]
    inputs.append(normal(b, t, h, v))
    return lambda q, k, v: chunk_linear_attn(q, k, v, normalize=True)[0], inputs


def measure(spec):
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    info = {"device": f"{device}: {name}", "torch": torch.__version__}
    dtype = getattr(torch, spec["dtype"])
    kernel = spec["kernel"]

    def sync(_):
        if device == "cuda":
            torch.cuda.synchronize()

    rows = []
    for shape in spec["shapes"]:
        for pass_name in spec["passes"]:
            row = {
                "kernel": kernel,
                "implementation": IMPLEMENTATIONS[kernel],
                "shape": f"{shape['batch']}x{shape['seq_len']}",
                "pass": pass_name,
                "dims": shape,
            }
            if time.time() > spec["deadline"]:
                rows.append({**row, "skipped": "over --budget_s"})
                continue
            try:
                fn, inputs = _peer(torch, kernel, shape, dtype, device)
            except ImportError as error:
                rows.append({**row, "skipped": f"not installed ({error})"})
                continue
            except RuntimeError as error:
                rows.append({**row, "skipped": str(error)})
                continue
            if pass_name == "backward":
                inputs = [x.requires_grad_(True) for x in inputs]

                def call(fn=fn, inputs=inputs):
                    loss = fn(*inputs).float().pow(2).sum()
                    return torch.autograd.grad(loss, inputs)

            else:

                def call(fn=fn, inputs=inputs):
                    with torch.no_grad():
                        return fn(*inputs)

            try:
                seconds, first = timed(call, sync, spec["repeats"])
            except Exception as error:  # a row fails, the run goes on
                text = (str(error).strip().splitlines() or [""])[0]
                rows.append({**row, "error": f"{type(error).__name__}: {text}"})
                continue
            rows.append({**row, "seconds": seconds, "compile_s": first})
    return {**info, "rows": rows}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", required=True, help="the spec JSON file")
    args = parser.parse_args()
    with open(args.spec) as f:
        spec = json.load(f)
    print(json.dumps(measure(spec)))


if __name__ == "__main__":
    main()
