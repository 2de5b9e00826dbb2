"""`python -m model.data`: preparing the Austen corpus and its tokenizer (the code is in model/corpus/austen.py)."""
from model.corpus.austen import main

if __name__ == "__main__":
    main()
