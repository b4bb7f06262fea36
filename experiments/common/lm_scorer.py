"""Scoring text with a causal language model as EleutherAI's
lm-evaluation-harness (0.4.13) does: its tokenization conventions for a
(context, continuation) pair and for rolling windows, and `Scorer`, which
reads requests in batches and returns their log-likelihoods or a greedy
generation. `experiments.common.zero_shot` builds the requests of each
task.
"""

import numpy as np

# the context length lm-eval gives a model whose config names none
DEFAULT_MAX_LENGTH = 2048
# tokens a generation may add (lm-eval's default `max_gen_toks`)
DEFAULT_MAX_GEN_TOKENS = 256


# === Tokenization conventions ===


def encode_pair(tokenizer, context, continuation, prefix_id):
    """The token ids of a (context, continuation) pair, as lm-eval forms
    them.

    Trailing whitespace of `context` moves to `continuation`; the pair is
    encoded whole and split where the context's own encoding ends (so a
    merge across the boundary counts to the continuation). An empty
    context becomes `[prefix_id]` (the end-of-text token).

    Returns:
        `(context_ids, continuation_ids)`, lists of ints.
    """
    if not context:
        continuation_ids = tokenizer.encode(continuation)
        if continuation_ids and continuation_ids[0] == prefix_id:
            return continuation_ids[:1], continuation_ids[1:]
        return [prefix_id], continuation_ids
    stripped = context.rstrip()
    spaces = context[len(stripped) :]
    whole = tokenizer.encode(stripped + spaces + continuation)
    context_ids = tokenizer.encode(stripped)
    return context_ids, whole[len(context_ids) :]


def rolling_windows(token_ids, prefix_id, max_length):
    """Windows that score every token of a document once (lm-eval's
    `loglikelihood_rolling` with a context of 1).

    The first window reads `[prefix_id] + tokens[:L-1]` and scores
    `tokens[:L]` (`L = max_length`); each next one scores the next `L`
    tokens (fewer at the end) and reads the `L` tokens before each of
    them, so the last, short window still reads a full window.

    Returns:
        A list of `(context_ids, continuation_ids)` pairs, disjoint.
    """
    tokens = list(token_ids)
    if not tokens:
        return []
    first = min(max_length, len(tokens))
    pairs = [([prefix_id], tokens[:first])]
    done = first
    while done < len(tokens):
        count = min(len(tokens) - done, max_length)
        end = done + count
        window = tokens[max(end - max_length - 1, 0) : end - 1]
        # the part before the scored tokens is their context
        pairs.append((window[: len(window) - (count - 1)], tokens[done:end]))
        done = end
    return pairs


# === Scoring with a model ===


def _bucket(length, limit):
    """The padded length of a batch, at most `limit`: the next multiple of
    16, or past 128 of an eighth of the next power of two (at most a
    quarter more than `length`), so that a few compiled programs (one per
    bucket) serve every length, with little padding. Powers of two padded
    0-shot SST-2's batches to 1.42 times their longest request's length,
    these to 1.18 times (lm-eval pads to the longest)."""
    step = max(16, 1 << max((length - 1).bit_length() - 3, 0))
    return min(-(-length // step) * step, limit)


class Scorer:
    """Log-likelihoods of continuations under a `kerasseq.models.CausalLM`.

    Requests are read in batches through the model's parallel form (the
    same call as training), right-padded to a bucket length: a causal
    model's predictions at real tokens do not depend on padding after them.

    Args:
        model: a `CausalLM`.
        max_length: the most tokens the model reads at once.
        batch_size: requests per forward pass.
    """

    def __init__(self, model, max_length, batch_size=8):
        from kerasseq.ops.dispatch import compile_function

        self.model = model
        self.max_length = max_length
        self.batch_size = batch_size

        def token_scores(token_ids, padding_mask, targets):
            import keras

            logits = model(
                {"token_ids": token_ids, "padding_mask": padding_mask},
                training=False,
            )
            logits = keras.ops.cast(logits, "float32")
            log_probs = keras.ops.log_softmax(logits, axis=-1)
            picked = keras.ops.take_along_axis(
                log_probs, targets[..., None], axis=-1
            )[..., 0]
            greedy = keras.ops.argmax(logits, axis=-1) == targets
            return picked, greedy

        # one program per (batch, length) shape, each with a static length
        # (the scan kernels need it); on JAX the model's variables go in as
        # arguments (without them JAX would run the model op by op)
        self._scores = compile_function(
            token_scores, relax_shapes=False, variables=model.variables
        )

    def loglikelihoods(self, requests):
        """`(log-likelihood, is_greedy)` of each `(context_ids,
        continuation_ids)` request, in order."""
        # what the model reads: the pair's last max_length + 1 tokens but
        # the last, with each position's next token as target
        rows = []
        for context_ids, continuation_ids in requests:
            if not continuation_ids:
                raise ValueError("A continuation encodes to no tokens.")
            whole = (list(context_ids) + list(continuation_ids))[
                -(self.max_length + 1) :
            ]
            rows.append((whole[:-1], whole[1:], len(continuation_ids)))
        results = [None] * len(rows)
        # longest first, as lm-eval orders them: batches of like lengths
        order = sorted(range(len(rows)), key=lambda i: -len(rows[i][0]))
        for begin in range(0, len(order), self.batch_size):
            chosen = order[begin : begin + self.batch_size]
            length = _bucket(len(rows[chosen[0]][0]), self.max_length)
            inputs = np.zeros((self.batch_size, length), np.int32)
            targets = np.zeros((self.batch_size, length), np.int32)
            mask = np.zeros((self.batch_size, length), bool)
            for row, index in enumerate(chosen):
                tokens, labels, _ = rows[index]
                inputs[row, : len(tokens)] = tokens
                targets[row, : len(labels)] = labels
                mask[row, : len(tokens)] = True
            picked, greedy = self._scores(inputs, mask, targets)
            picked = np.asarray(picked)
            greedy = np.asarray(greedy)
            for row, index in enumerate(chosen):
                tokens, _, count = rows[index]
                span = slice(len(tokens) - count, len(tokens))
                results[index] = (
                    float(np.sum(picked[row, span], dtype=np.float64)),
                    bool(np.all(greedy[row, span])),
                )
        return results

    def generate_until(self, tokenizer, context, until, max_tokens, end_id):
        """The greedy continuation of `context`, cut before the first of
        the strings `until` (or the end-of-text token), as lm-eval's
        `generate_until`: the context keeps its last `max_length -
        max_tokens` tokens."""
        context_ids = tokenizer.encode(context) or [end_id]
        context_ids = context_ids[-(self.max_length - max_tokens) :]
        generated = []
        text = ""
        # a few tokens at a time, stopping once a stop string appeared
        while len(generated) < max_tokens:
            count = min(16, max_tokens - len(generated))
            output = self.model.generate(
                np.asarray([context_ids + generated], np.int32), count
            )
            new = [
                int(t) for t in output[0, len(context_ids) + len(generated) :]
            ]
            generated += new
            if end_id in generated:
                generated = generated[: generated.index(end_id)]
                text = tokenizer.decode(generated)
                break
            text = tokenizer.decode(generated)
            if any(stop in text for stop in until):
                break
        for stop in until:
            text = text.split(stop)[0]
        return text
