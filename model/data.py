"""`python -m model.data`: preparing the Austen and Brown corpora (the code is in model/corpus/)."""
from model.corpus.cli import main

if __name__ == "__main__":
    main()
