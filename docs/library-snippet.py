"""Use the library: fill a blank with a shipped checkpoint and print the fill and its log-probability.

The README's "Using the library" example, run as written by tests/test_front_door.py; from the
repository root: `PYTHONPATH=. python docs/library-snippet.py`. Any A3 checkpoint folder works: a
full model, or a LoRA adapter over its base.
"""
from model import encode_segments, load_a3, parse_template, run

model, tok = load_a3("assets/a3-austen-tiny")  # (A3Model, tokenizer), on the CPU in fp32
story = parse_template("Elizabeth [[6]] the letter twice before she understood it.")  # [[N]]: N tokens to fill
enc = encode_segments(tok, story, tok.bos_token_id)  # BOS-first ids, the blank mask, each blank's positions
trace = run(model, enc.input_ids, enc.blank_mask, tokenizer=tok, spans=enc.blank_spans)  # greedy, left to right
print(repr(trace.fills(tok)[0]), f"log p = {trace.log_likelihood:.2f} nats")  # exact: one token per step
