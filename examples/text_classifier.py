"""Classifying short texts with Embedding + Bidirectional LSTM, on a corpus made up here.

    python examples/text_classifier.py            # 3,000 sentences, 8 epochs
    python examples/text_classifier.py --small    # 400 sentences, 3 epochs

The corpus: sentences about three topics (weather, food, sport) from small vocabularies of
topic words and shared filler words, of varying length. Words become integer ids (0 is
padding), sequences are zero-padded to a fixed length, and the Embedding's mask_zero tells
the LSTMs to skip the padding. Prints the test accuracy and a few predictions.
"""
from __future__ import annotations

import argparse

import numpy as np

import pynn
from pynn import layers

TOPICS = {
    "weather": "rain sun cloud wind storm snow cold warm forecast sky thunder fog".split(),
    "food": "bread soup cheese apple dinner lunch spicy sweet bake kitchen recipe salad".split(),
    "sport": "goal match team score coach player ball race win league referee stadium".split(),
}
FILLER = "the a today we it was very really and then my our this that".split()
MAX_LEN = 16


def make_corpus(n, seed=0):
    """n sentences (lists of words) and their topic ids; about a third of each sentence's
    words are topic words, the rest filler."""
    rng = np.random.default_rng(seed)
    names = list(TOPICS)
    texts, labels = [], []
    for _ in range(n):
        topic = int(rng.integers(len(names)))
        length = int(rng.integers(4, MAX_LEN + 1))
        words = [str(rng.choice(TOPICS[names[topic]])) if rng.random() < 0.35
                 else str(rng.choice(FILLER)) for _ in range(length)]
        words[int(rng.integers(length))] = str(rng.choice(TOPICS[names[topic]]))
        texts.append(words)
        labels.append(topic)
    return texts, np.array(labels, np.int64)


def vocabulary():
    words = sorted({w for ws in TOPICS.values() for w in ws} | set(FILLER))
    return {w: i + 1 for i, w in enumerate(words)}   # 0 is the padding id


def encode(texts, vocab, max_len=MAX_LEN):
    """Integer ids, zero-padded at the end to max_len (longer texts are cut)."""
    out = np.zeros((len(texts), max_len), np.int32)
    for i, words in enumerate(texts):
        ids = [vocab[w] for w in words][:max_len]
        out[i, :len(ids)] = ids
    return out


def build(vocab_size, seed=0):
    pynn.utils.set_random_seed(seed)
    model = pynn.Sequential([
        pynn.Input((MAX_LEN,)),
        layers.Embedding(vocab_size, 16, mask_zero=True),
        layers.Bidirectional(layers.LSTM(16)),
        layers.Dense(len(TOPICS), activation="softmax"),
    ])
    model.compile(optimizer=pynn.optimizers.Adam(5e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def main(small=False, epochs=None, seed=0):
    vocab = vocabulary()
    texts, labels = make_corpus(400 if small else 3000, seed)
    x = encode(texts, vocab)
    split = int(len(x) * 0.8)
    model = build(len(vocab) + 1, seed)
    epochs = epochs or (3 if small else 8)
    model.fit(x[:split], labels[:split], epochs=epochs, batch_size=32, verbose=0)
    _, accuracy = model.evaluate(x[split:], labels[split:], verbose=0)
    print(f"test accuracy {accuracy:.4f} on {len(x) - split} sentences")
    names = list(TOPICS)
    probe = [["the", "storm", "was", "cold"], ["we", "bake", "bread", "today"],
             ["my", "team", "scored", "a", "goal"]]
    known = [[w for w in words if w in vocab] for words in probe]
    pred = np.argmax(model.predict(encode(known, vocab), verbose=0), axis=1)
    for words, p in zip(probe, pred):
        print(f"  {' '.join(words)!r} -> {names[p]}")
    return {"accuracy": float(accuracy), "predictions": [names[p] for p in pred]}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true")
    parser.add_argument("--epochs", type=int, default=None)
    args = parser.parse_args()
    main(small=args.small, epochs=args.epochs)
