"""What a built corpus is to its readers: the sample schema, the dataset card, curation decisions."""
