"""`python -m model.fills`: the candidate-fill study (the code is in model/evaluation/fills.py)."""
from model.evaluation.fills import main

if __name__ == "__main__":
    main()
