"""Measuring models; each study writes a report under docs/.

    infill_task + infilling + infilling_report   sentence infilling, A3 vs diffusion vs AR (python -m model.eval)
    fill_study + fills_report                    candidate pools, ranking rules, lengths (python -m model.fills)
    card_metrics + domains                       a model card's likelihoods, per domain (python -m model.metrics)
    benchmark + bench_systems + bench_report     the speed benchmark (python -m model.bench)
    precision_bench                              CPU precisions and threads vs the bandwidth limit (--cpu-precision)
    end_signal                                   the length signal's end hazard, teacher forced (python -m ...end_signal)
"""
