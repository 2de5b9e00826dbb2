"""Training and evaluation text: the Austen novels and their R-data reader, tokenizer, packing."""
