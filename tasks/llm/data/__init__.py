"""Text into batches: the tokenizer and its training, corpora, token shards, chat formats and task datasets."""
