"""The A3 math and the data it runs on (docs/DESIGN.md); it imports nothing above it.

    two_stream     the two-stream walk over a LLaMA-family decoder (content and query rows), KVCache
    groups         group ids <-> attention masks; the fixed orders
    samplers       the groupings the training curriculum draws
    a3             A3Model: the base causal LM plus the query vector w
    decode         cached group-wise decoding as Step events: decode, run, run_batch
    decode_events  what a run is asked (DecodeConfig, validate) and what each step reports (Step)
    sampling       greedy, temperature, top-k, top-p, with a seeded generator
    chosen_length  a blank whose length the model chooses (the learned length signal)
    length_head    a learned log-normal over a blank's length; the length a [[?]] blank gets
    context_store  encoded stories kept between decodes (a story filled again skips its encoding)
    infill         text with blanks <-> BOS-first ids, blank mask and layout
    trace          a finished run: output ids, the grouping it took, log-likelihood, fills
    scoring        score_blanks, score_fills: log p of blank tokens under any grouping
    candidates     candidate pools, the ranking rules (rank), blank lengths
    checkpoint     the one module that reads and writes checkpoint folders (full, adapter, diffusion)
"""
