r"""The transformers side of `python -m experiments.benchmark lm`.

Runs under any Python that has PyTorch and transformers (never kerasseq's
own environment: torch is no dependency of kerasseq), e.g.

    python experiments/peers/transformers_lm.py create --spec=spec.json
    python experiments/peers/transformers_lm.py measure --spec=spec.json

`create` writes a randomly initialised checkpoint (`save_pretrained`) of
the spec's `config` to its `checkpoint` directory, seeded, so that
kerasseq loads the very same weights. `measure` loads it and measures, as
kerasseq's side does:

- scoring: the log-likelihood of each `(context_ids, continuation_ids)`
  request of `requests_file`, the way lm-evaluation-harness's Hugging Face
  model scores them (longest first, `batch_size` at a time, right-padded
  to the batch's longest, one forward pass, log-softmax, the
  continuation's tokens summed);
- generation: `model.generate` (greedy, KV cache, exactly `new_tokens`
  tokens) after each batch of prompts of `prompts`, timed with 1 and with
  `new_tokens` new tokens, and the bytes of the cache it returns.

It prints one JSON line: the timings, the scores and the generated ids.
Only the standard library, numpy, torch and transformers are imported.
"""

import argparse
import json
import statistics
import sys
import time


def _import():
    import torch
    import transformers

    return torch, transformers


CLASSES = {
    "gpt2": ("GPT2Config", "GPT2LMHeadModel"),
    "gpt_neox": ("GPTNeoXConfig", "GPTNeoXForCausalLM"),
    "mamba": ("MambaConfig", "MambaForCausalLM"),
}


def create(spec):
    torch, transformers = _import()
    config_name, model_name = CLASSES[spec["config"]["model_type"]]
    settings = {k: v for k, v in spec["config"].items() if k != "model_type"}
    config = getattr(transformers, config_name)(**settings)
    torch.manual_seed(spec.get("seed", 0))
    model = getattr(transformers, model_name)(config)
    model.save_pretrained(spec["checkpoint"])
    return {"created": spec["checkpoint"], "parameters": model.num_parameters()}


def _score(torch, model, requests, batch_size, max_length):
    """lm-eval's batched log-likelihoods of `requests`, in order."""
    rows = []
    for context, continuation in requests:
        whole = (context + continuation)[-(max_length + 1) :]
        rows.append((whole[:-1], len(continuation)))
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i][0]))
    scores = [None] * len(rows)
    with torch.inference_mode():
        for begin in range(0, len(order), batch_size):
            chosen = order[begin : begin + batch_size]
            length = len(rows[chosen[0]][0])
            ids = torch.zeros((len(chosen), length), dtype=torch.long)
            for row, index in enumerate(chosen):
                tokens = rows[index][0]
                ids[row, : len(tokens)] = torch.tensor(tokens)
            log_probs = torch.log_softmax(model(ids).logits.float(), dim=-1)
            for row, index in enumerate(chosen):
                tokens, count = rows[index]
                whole = requests[index][0] + requests[index][1]
                targets = torch.tensor(whole[-count:])
                picked = log_probs[row, len(tokens) - count : len(tokens)]
                picked = picked.gather(-1, targets[:, None])[:, 0]
                scores[index] = float(picked.double().sum())
    return scores


def _generate(torch, model, prompt, new_tokens):
    """The new tokens, and the cache `generate` ends with."""
    with torch.inference_mode():
        output = model.generate(
            prompt,
            attention_mask=torch.ones_like(prompt),
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            use_cache=True,
            pad_token_id=0,
            return_dict_in_generate=True,
        )
    cache = getattr(output, "past_key_values", None)
    if cache is None:  # Mamba's recurrent states
        cache = getattr(output, "cache_params", None)
    return output.sequences[:, prompt.shape[1] :], cache


def _tensor_bytes(torch, value, seen=None):
    """Bytes of the distinct tensors reachable from `value` (a cache
    object, its lists, tuples, dicts and attributes)."""
    seen = set() if seen is None else seen
    if id(value) in seen:
        return 0
    seen.add(id(value))
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        children = value.values()
    elif isinstance(value, (list, tuple)):
        children = value
    elif hasattr(value, "__dict__") and not isinstance(value, type):
        children = vars(value).values()
    else:
        return 0
    return sum(_tensor_bytes(torch, child, seen) for child in children)


def _timed(repeats, function, *args):
    """The result of `function(*args)` and the median of `repeats` timed
    calls after a first, untimed one (whose time is returned too)."""
    start = time.perf_counter()
    result = function(*args)
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = function(*args)
        times.append(time.perf_counter() - start)
    return result, first, statistics.median(times)


def measure(spec):
    torch, transformers = _import()
    model = transformers.AutoModelForCausalLM.from_pretrained(
        spec["checkpoint"], torch_dtype=torch.float32
    )
    model.eval()
    with open(spec["requests_file"]) as f:
        requests = json.load(f)
    repeats = spec["repeats"]
    scores, score_first, score_s = _timed(
        repeats,
        _score,
        torch,
        model,
        requests,
        spec["batch_size"],
        spec["max_length"],
    )
    generation = []
    for prompts in spec["prompts"]:
        prompt = torch.tensor(prompts, dtype=torch.long)
        _, one_first, one_s = _timed(
            repeats, _generate, torch, model, prompt, 1
        )
        (generated, cache), _, all_s = _timed(
            repeats, _generate, torch, model, prompt, spec["new_tokens"]
        )
        generation.append(
            {
                "batch_size": len(prompts),
                "prompt_len": len(prompts[0]),
                "first_token_s": one_s,
                "first_generate_s": one_first,
                "generate_s": all_s,
                "state_bytes": _tensor_bytes(torch, cache),
                "generated": generated.tolist(),
            }
        )
    return {
        "framework": f"transformers {transformers.__version__}",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "attention": getattr(model.config, "_attn_implementation", None),
        "parameters": model.num_parameters(),
        "score_first_s": score_first,
        "score_s": score_s,
        "scores": scores,
        "generation": generation,
    }


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=("create", "measure"))
    parser.add_argument("--spec", required=True, help="a JSON file")
    args = parser.parse_args(argv)
    with open(args.spec) as f:
        spec = json.load(f)
    result = create(spec) if args.command == "create" else measure(spec)
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
