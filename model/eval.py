"""`python -m model.eval`: the infilling evaluation (A3 vs diffusion vs AR) (the code is in model/evaluation/infilling.py)."""
from model.evaluation.infilling import main

if __name__ == "__main__":
    main()
