"""Progressive adaptation (python -m model.train): a causal LM becomes A3, stage by stage.

    recipe         TrainConfig and its stages (the JSON recipes in configs/), checked
    steps          the pieces of one step: batches, groupings, losses, the distillation anchor
    slack_rows     blanks with slack: the rows that teach where a fill of unknown length ends
    models         what a stage trains: the stage-0 causal LM, A3 (full or LoRA), diffusion
    evaluate       held_out_nll: the held-out loss a run logs
    checkpointing  out/last, out/base, out/final: saving and resuming
    loop           the training loop on Accelerate, and its command line
    length_fit     the length head (core/length_head.py) fitted on frozen features, measured, saved
"""
