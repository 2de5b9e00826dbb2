"""`python -m model.metrics`: held-out likelihood metrics for a model card (model/evaluation/card_metrics.py),
or with --domains the per-domain table of several adapters (model/evaluation/domains.py)."""
import sys

if __name__ == "__main__":
    if "--domains" in sys.argv[1:]:
        from model.evaluation.domains import main
        main(sys.argv[1:])
    else:
        from model.evaluation.card_metrics import main
        main()
