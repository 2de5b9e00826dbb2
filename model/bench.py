"""`python -m model.bench`: the speed benchmark (the code is in model/evaluation/benchmark.py)."""
from model.evaluation.benchmark import main

if __name__ == "__main__":
    main()
