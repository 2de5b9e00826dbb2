"""Training and evaluation text.

    austen  the Austen novels (read from R's janeaustenr data), the BPE tokenizer, packed rows
    rdata   a pure-Python reader for R's lazy-load data format
    brown   the Brown corpus (modern English, per genre)
    cli     python -m model.data: prepare the corpora and say what they hold
"""
