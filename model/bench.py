"""`python -m model.bench`: the speed benchmark (the code is in model/evaluation/bench.py)."""
from model.evaluation.bench import main

if __name__ == "__main__":
    main()
