"""`python -m model.fills`: the candidate-fill study (the code is in model/evaluation/fill_study.py)."""
from model.evaluation.fill_study import main

if __name__ == "__main__":
    main()
