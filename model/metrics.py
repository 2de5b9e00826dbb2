"""`python -m model.metrics`: held-out likelihood metrics for a model card (the code is in model/evaluation/metrics.py)."""
from model.evaluation.metrics import main

if __name__ == "__main__":
    main()
