"""`python -m model.smollm`: fetching and converting the SmolLM2 base (the code is in model/backbones/smollm_base.py)."""
from model.backbones.smollm_base import main

if __name__ == "__main__":
    main()
