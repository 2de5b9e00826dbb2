"""`python -m model.train`: the progressive-adaptation trainer (the code is in model/training/loop.py)."""
from model.training.loop import main

if __name__ == "__main__":
    main()
