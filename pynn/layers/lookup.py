"""Vocabulary layers (Keras 3): IntegerLookup, StringLookup, TextVectorization.

They map strings or arbitrary integers through a vocabulary, which has no place in a float32
graph, so they run in NumPy: called on an array (``layer(np.array(["a", "b"]))``) they return
an array, and as the first layers of a `Sequential` model they are applied to the inputs
before the model's graph (in fit, evaluate and predict), as a Keras user puts a
TextVectorization in front of a model.

Index layout (Keras's): in "int" mode with a mask token, index 0 is the mask; then
`num_oov_indices` out-of-vocabulary indices; then the vocabulary. Other modes have no mask
index (the mask token is dropped). `adapt(data)` builds the vocabulary ordered by frequency
(ties: the larger token first, as Keras sorts), capped at `max_tokens` entries in all.
"""
from __future__ import annotations

import re
import zlib
from collections import Counter
from typing import Any

import numpy as np

from pynn.layers.layer import KerasTensor, Layer, positive_int

MODES = ("int", "one_hot", "multi_hot", "count", "tf_idf")
# the characters "lower_and_strip_punctuation" removes (Keras's pattern)
PUNCTUATION = re.compile(r'[!"#$%&()\*\+,-\./:;<=>?@\[\\\]^_`{|}~\']')


def _check_host_call(layer, inputs, args, kwargs):
    if isinstance(inputs, KerasTensor):
        raise TypeError(f"{layer.name}: {type(layer).__name__} runs on NumPy arrays, not in a "
                        f"model graph; call it on your data, or put it first in a Sequential "
                        f"model (it is then applied to the inputs)")
    if args or kwargs.get("mask") is not None:
        raise TypeError(f"{layer.name}: unexpected call arguments")


class _IndexLookup(Layer):
    """Vocabulary, adapt, and the encodings shared by the lookup layers."""

    _host_step = True   # runs on NumPy before a model's graph (see pynn.models.sequential)
    _kind = ""          # "str" or "int"

    def __init__(self, max_tokens, num_oov_indices, mask_token, oov_token, vocabulary,
                 idf_weights, invert, output_mode, pad_to_max_tokens, sparse, **kwargs):
        super().__init__(**kwargs)
        self.max_tokens = None if max_tokens is None else positive_int(max_tokens,
                                                                       "max_tokens")
        if isinstance(num_oov_indices, bool) or not isinstance(num_oov_indices, int) or \
                num_oov_indices < 0:
            raise ValueError(f"num_oov_indices: expected an integer >= 0. Received: "
                             f"num_oov_indices={num_oov_indices!r}")
        self.num_oov_indices = num_oov_indices
        if output_mode == "tf-idf":
            output_mode = "tf_idf"
        if output_mode not in MODES:
            raise ValueError(f"output_mode: expected one of {MODES}. Received: "
                             f"output_mode={output_mode!r}")
        if invert and output_mode != "int":
            raise ValueError(f"invert: only with output_mode='int'. Received: "
                             f"output_mode={output_mode!r}")
        if sparse:
            raise ValueError("sparse: pynn has no sparse tensors; use False")
        if pad_to_max_tokens and self.max_tokens is None:
            raise ValueError("pad_to_max_tokens: needs max_tokens")
        self.output_mode = output_mode
        self.invert = bool(invert)
        self.pad_to_max_tokens = bool(pad_to_max_tokens)
        self.mask_token = None if mask_token is None else self._token(mask_token, "mask_token")
        self.oov_token = self._token(oov_token, "oov_token")
        self._vocab: list[Any] | None = None
        self._idf: np.ndarray | None = None
        self._fixed_vocab = vocabulary is not None
        if vocabulary is not None:
            self.set_vocabulary(vocabulary, idf_weights)
        elif idf_weights is not None:
            raise ValueError("idf_weights: only together with vocabulary")
        self.built = True

    # --- tokens and vocabulary ----------------------------------------------------------------
    def _token(self, value, name):
        if self._kind == "str":
            if isinstance(value, bytes):
                value = value.decode("utf-8")
            if not isinstance(value, str):
                raise TypeError(f"{name}: expected a string. Received: {name}={value!r}")
            return value
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name}: expected an integer. Received: {name}={value!r}")
        return int(value)

    def _oov_start(self):
        return 1 if self.mask_token is not None and self.output_mode == "int" else 0

    def _token_start(self):
        return self._oov_start() + self.num_oov_indices

    def set_vocabulary(self, vocabulary: Any, idf_weights: Any = None) -> None:
        """Sets the vocabulary (a list, or a path to a file with one token per line); leading
        special tokens (mask, OOV) are accepted and dropped. tf_idf needs `idf_weights`, one
        per vocabulary entry."""
        if isinstance(vocabulary, str) and self._kind == "str" and "\n" not in vocabulary:
            with open(vocabulary, encoding="utf-8") as f:
                vocabulary = [line.rstrip("\n") for line in f]
        vocab = [self._token(v, "vocabulary") for v in np.asarray(vocabulary).reshape(-1)
                 .tolist()]
        specials = ([self.mask_token] if self._oov_start() else []) + \
            [self.oov_token] * self.num_oov_indices
        if vocab[:len(specials)] == specials and specials:
            vocab = vocab[len(specials):]
        if len(set(vocab)) != len(vocab):
            raise ValueError("vocabulary: contains repeated tokens")
        for special, what in ((self.mask_token, "mask_token"), (self.oov_token, "oov_token")):
            if special is not None and special in vocab:
                raise ValueError(f"vocabulary: contains the {what} {special!r} after the "
                                 f"special tokens")
        if self.max_tokens is not None and len(vocab) + self._token_start() > self.max_tokens:
            raise ValueError(f"vocabulary: {len(vocab)} tokens plus {self._token_start()} "
                             f"special indices exceed max_tokens={self.max_tokens}")
        if self.output_mode == "tf_idf":
            if idf_weights is None:
                raise ValueError("idf_weights: required with output_mode='tf_idf' and a "
                                 "vocabulary")
            idf = np.asarray(idf_weights, np.float64).reshape(-1)
            if idf.size == len(vocab) + self._token_start():
                idf = idf[self._token_start():]
            if idf.size != len(vocab):
                raise ValueError(f"idf_weights: expected {len(vocab)} values (one per token), "
                                 f"got {idf.size}")
            self._idf = self._with_oov_idf(idf)
        elif idf_weights is not None:
            raise ValueError("idf_weights: only with output_mode='tf_idf'")
        self._vocab = vocab
        self._index = {t: i + self._token_start() for i, t in enumerate(vocab)}

    def _with_oov_idf(self, idf):
        """The per-index idf: OOV indices get the mean of the tokens' weights (Keras)."""
        mean = float(idf.mean()) if idf.size else 0.0
        return np.concatenate([np.full(self._token_start(), mean), idf]).astype(np.float32)

    def get_vocabulary(self, include_special_tokens: bool = True) -> list[Any]:
        vocab = list(self._vocab or [])
        if not include_special_tokens:
            return vocab
        return ([self.mask_token] if self._oov_start() else []) + \
            [self.oov_token] * self.num_oov_indices + vocab

    def vocabulary_size(self) -> int:
        return len(self.get_vocabulary())

    def _documents(self, data):
        """Rows of tokens from adapt's data (a 1-D array is one document, as in Keras)."""
        arr = np.asarray(data, dtype=object)
        if arr.ndim == 0:
            arr = arr.reshape(1)
        if arr.ndim == 1:
            return [[self._token(v, "data") for v in arr.tolist()]]
        return [[self._token(v, "data") for v in row.reshape(-1).tolist()] for row in arr]

    def adapt(self, data: Any) -> None:
        """Builds the vocabulary from `data` (tokens; rows are documents for tf_idf)."""
        if self._fixed_vocab:
            raise ValueError(f"{self.name}: cannot adapt a layer made with a vocabulary")
        self._adapt_documents(self._documents(data))

    def _adapt_documents(self, docs):
        counts: Counter = Counter()
        doc_counts: Counter = Counter()
        for doc in docs:
            counts.update(doc)
            doc_counts.update(set(doc))
        for special in (self.mask_token, self.oov_token):
            counts.pop(special, None)
        # Keras: descending count, ties by descending token
        ordered = sorted(counts, key=lambda t: (counts[t], t), reverse=True)
        if self.max_tokens is not None:
            ordered = ordered[:max(self.max_tokens - self._token_start(), 0)]
        self._vocab = ordered
        self._index = {t: i + self._token_start() for i, t in enumerate(ordered)}
        if self.output_mode == "tf_idf":
            n = len(docs)
            idf = np.log(1.0 + n / (1.0 + np.array([doc_counts[t] for t in ordered],
                                                    np.float64)))
            self._idf = self._with_oov_idf(idf)

    # --- the mapping --------------------------------------------------------------------------
    def _oov_index(self, token):
        if self.num_oov_indices == 0:
            raise ValueError(f"{self.name}: {token!r} is not in the vocabulary and "
                             f"num_oov_indices=0")
        if self.num_oov_indices == 1:
            return self._oov_start()
        key = token if self._kind == "int" else zlib.crc32(token.encode("utf-8"))
        return self._oov_start() + key % self.num_oov_indices

    def _lookup(self, tokens: np.ndarray) -> np.ndarray:
        """Tokens (any shape) -> int64 indices; the mask token -> 0 in int mode, -1 (dropped)
        otherwise."""
        if self._vocab is None:
            raise ValueError(f"{self.name}: the layer has no vocabulary; pass vocabulary or "
                             f"call adapt() first")
        out = np.empty(tokens.shape, np.int64)
        mask_index = 0 if self.output_mode == "int" else -1
        flat = out.reshape(-1)
        for k, t in enumerate(tokens.reshape(-1).tolist()):
            t = self._token(t, "input")
            if self.mask_token is not None and t == self.mask_token:
                flat[k] = mask_index
            else:
                i = self._index.get(t)
                flat[k] = self._oov_index(t) if i is None else i
        return out

    def _depth(self):
        return self.max_tokens if self.pad_to_max_tokens else self.vocabulary_size()

    def _encode(self, idx: np.ndarray) -> np.ndarray:
        """Indices -> the output mode's float32 array (Keras's rules for shapes)."""
        if self.output_mode == "int":
            return idx
        depth = self._depth()
        if self.output_mode == "one_hot":
            if idx.ndim > 1 and idx.shape[-1] == 1:
                idx = idx[..., 0]
            out = np.zeros(idx.shape + (depth,), np.float32)
            valid = idx >= 0
            np.put_along_axis(out, np.where(valid, idx, 0)[..., None],
                              valid[..., None].astype(np.float32), axis=-1)
            return out
        rows = idx.reshape(1, -1) if idx.ndim == 1 else idx.reshape(idx.shape[0], -1)
        out = np.zeros((rows.shape[0], depth), np.float32)
        for r, row in enumerate(rows):
            row = row[row >= 0]
            np.add.at(out[r], row, 1.0)
        if self.output_mode == "multi_hot":
            out = np.minimum(out, 1.0)
        elif self.output_mode == "tf_idf":
            known = self._idf if self._idf is not None else np.zeros(0, np.float32)
            idf = np.zeros(depth, np.float32)
            idf[:known.size] = known[:depth]
            out *= idf
        return out[0] if idx.ndim == 1 else out

    def _invert(self, idx: np.ndarray) -> np.ndarray:
        vocab = self.get_vocabulary()
        arr = np.asarray(idx)
        if arr.dtype.kind not in "iu" and not (arr.dtype.kind == "f" and
                                               np.all(arr == np.floor(arr))):
            raise TypeError(f"{self.name}: invert=True expects integer indices, got dtype "
                            f"{arr.dtype}")
        flat = [vocab[i] if 0 <= i < len(vocab) else self.oov_token
                for i in arr.astype(np.int64).reshape(-1).tolist()]
        dtype = object if self._kind == "str" else np.int64
        out = np.array(flat, dtype=dtype).reshape(arr.shape)
        return out.astype(str) if self._kind == "str" else out

    def __call__(self, inputs, *args, **kwargs):
        _check_host_call(self, inputs, args, kwargs)
        if self.invert:
            return self._invert(inputs)
        return self._encode(self._lookup(self._as_tokens(inputs)))

    def _as_tokens(self, inputs):
        arr = np.asarray(inputs)
        if self._kind == "int" and arr.dtype.kind not in "iu":
            if arr.dtype.kind == "f" and np.all(arr == np.floor(arr)):
                return arr.astype(np.int64)
            raise TypeError(f"{self.name}: expected integers, got dtype {arr.dtype}")
        if self._kind == "str" and arr.dtype.kind not in "USO":
            raise TypeError(f"{self.name}: expected strings, got dtype {arr.dtype}")
        return arr

    def host_output_shape(self, sample_shape: tuple[int, ...]) -> tuple[int, ...]:
        """One sample's output shape for samples of `sample_shape`."""
        if self.output_mode == "int" or self.invert:
            return tuple(sample_shape)
        if self.output_mode == "one_hot":
            s = tuple(sample_shape)
            return (s[:-1] if s and s[-1] == 1 else s) + (self._depth(),)
        return (self._depth(),)

    def get_config(self) -> dict:
        cfg = {**super().get_config(), "max_tokens": self.max_tokens,
               "num_oov_indices": self.num_oov_indices, "mask_token": self.mask_token,
               "oov_token": self.oov_token, "invert": self.invert,
               "output_mode": self.output_mode, "pad_to_max_tokens": self.pad_to_max_tokens,
               "sparse": False,
               # the vocabulary (adapted or given) travels in the config, so that a saved
               # model maps tokens the same way after loading
               "vocabulary": None if self._vocab is None else list(self._vocab),
               "idf_weights": None if self._idf is None else
               self._idf[self._token_start():].tolist()}
        return cfg


class StringLookup(_IndexLookup):
    """Strings to indices (or encodings) through a vocabulary.

    Args:
        max_tokens: cap on the vocabulary size, special indices included.
        num_oov_indices: indices for unknown strings (1; 0 makes unknowns an error; more
            than 1 spreads unknowns by a CRC32 hash of the string).
        mask_token: a string mapped to 0 in int mode (None: no mask).
        oov_token: what invert=True gives for unknown indices ("[UNK]").
        vocabulary: list of strings (or a file path); else call adapt(data).
        invert: map indices back to strings.
        output_mode: "int", "one_hot", "multi_hot", "count" or "tf_idf".

    Example:
        >>> StringLookup(vocabulary=["a", "b", "c", "d"])(np.array([["a", "c", "d"],
        ...                                                         ["d", "z", "b"]]))
        array([[1, 3, 4],
               [4, 0, 2]])
    """

    _kind = "str"

    def __init__(self, max_tokens=None, num_oov_indices=1, mask_token=None, oov_token="[UNK]",
                 vocabulary=None, idf_weights=None, invert=False, output_mode="int",
                 pad_to_max_tokens=False, sparse=False, encoding="utf-8", **kwargs):
        if encoding != "utf-8":
            raise ValueError(f"encoding: pynn reads utf-8. Received: encoding={encoding!r}")
        super().__init__(max_tokens, num_oov_indices, mask_token, oov_token, vocabulary,
                         idf_weights, invert, output_mode, pad_to_max_tokens, sparse, **kwargs)

    def get_config(self) -> dict:
        return {**super().get_config(), "encoding": "utf-8"}


class IntegerLookup(_IndexLookup):
    """Integers to indices (or encodings) through a vocabulary; the arguments of
    StringLookup, with integer tokens (oov_token -1; several OOV indices take
    ``token % num_oov_indices``, Keras's floormod)."""

    _kind = "int"

    def __init__(self, max_tokens=None, num_oov_indices=1, mask_token=None, oov_token=-1,
                 vocabulary=None, vocabulary_dtype="int64", idf_weights=None, invert=False,
                 output_mode="int", sparse=False, pad_to_max_tokens=False, **kwargs):
        if vocabulary_dtype not in ("int64", "int32"):
            raise ValueError(f"vocabulary_dtype: expected 'int64'. Received: "
                             f"vocabulary_dtype={vocabulary_dtype!r}")
        super().__init__(max_tokens, num_oov_indices, mask_token, oov_token, vocabulary,
                         idf_weights, invert, output_mode, pad_to_max_tokens, sparse, **kwargs)

    def get_config(self) -> dict:
        return {**super().get_config(), "vocabulary_dtype": "int64"}


class TextVectorization(Layer):
    """Text to token indices or bag-of-words vectors.

    Each string is standardised ("lower_and_strip_punctuation": lower case, punctuation
    removed; "lower"; "strip_punctuation"; None), split on whitespace, and looked up in a
    vocabulary built by `adapt(texts)` (or given), where index 0 is padding ("") and 1 the
    unknown token in "int" mode.

    Args:
        max_tokens: vocabulary cap, special indices included.
        standardize, split: as above ("whitespace" or None).
        output_mode: "int" (sequences padded with 0 to the longest in the batch, or to
            `output_sequence_length`, longer ones cut), "multi_hot", "count", "tf_idf".
        output_sequence_length: fixed length in int mode.
        vocabulary, idf_weights, pad_to_max_tokens: as StringLookup.

    Example:
        >>> vec = TextVectorization(output_sequence_length=4)
        >>> vec.adapt(np.array(["The cat sat.", "The dog!"]))
        >>> vec(np.array(["the cat ran"]))
        array([[2, 4, 1, 0]])
    """

    _host_step = True

    def __init__(self, max_tokens=None, standardize="lower_and_strip_punctuation",
                 split="whitespace", ngrams=None, output_mode="int", output_sequence_length=None,
                 pad_to_max_tokens=False, vocabulary=None, idf_weights=None, sparse=False,
                 ragged=False, encoding="utf-8", **kwargs):
        super().__init__(**kwargs)
        if standardize not in (None, "lower_and_strip_punctuation", "lower",
                               "strip_punctuation"):
            raise ValueError(f"standardize: expected None, 'lower_and_strip_punctuation', "
                             f"'lower' or 'strip_punctuation'. Received: "
                             f"standardize={standardize!r}")
        if split not in (None, "whitespace"):
            raise ValueError(f"split: expected 'whitespace' or None. Received: split={split!r}")
        if ngrams is not None:
            raise ValueError("ngrams: not supported by pynn; use None")
        if ragged:
            raise ValueError("ragged: pynn has no ragged tensors; use False")
        if output_mode not in ("int", "multi_hot", "count", "tf_idf", "tf-idf"):
            raise ValueError(f"output_mode: expected 'int', 'multi_hot', 'count' or 'tf_idf'. "
                             f"Received: output_mode={output_mode!r}")
        if output_sequence_length is not None:
            if output_mode != "int":
                raise ValueError("output_sequence_length: only with output_mode='int'")
            output_sequence_length = positive_int(output_sequence_length,
                                                  "output_sequence_length")
        self.standardize = standardize
        self.split = split
        self.output_sequence_length = output_sequence_length
        self._lookup_layer = StringLookup(
            max_tokens=max_tokens, mask_token="", output_mode=output_mode,
            vocabulary=vocabulary, idf_weights=idf_weights,
            pad_to_max_tokens=pad_to_max_tokens, sparse=sparse, encoding=encoding,
            name=f"{self.name}_lookup")
        self.built = True

    @property
    def output_mode(self) -> str:
        return self._lookup_layer.output_mode

    def _sublayers(self):
        return []

    def _tokens(self, text: str) -> list[str]:
        if self.standardize in ("lower", "lower_and_strip_punctuation"):
            text = text.lower()
        if self.standardize in ("strip_punctuation", "lower_and_strip_punctuation"):
            text = PUNCTUATION.sub("", text)
        return text.split() if self.split == "whitespace" else [text]

    def _texts(self, data):
        arr = np.asarray(data)
        if arr.ndim == 0:
            arr = arr.reshape(1)
        if arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr[:, 0]
        if arr.ndim != 1:
            raise ValueError(f"{self.name}: expected a batch of strings of shape (batch,) or "
                             f"(batch, 1), got shape {arr.shape}")
        if arr.dtype.kind not in "USO":
            raise TypeError(f"{self.name}: expected strings, got dtype {arr.dtype}")
        return [t.decode("utf-8") if isinstance(t, bytes) else str(t) for t in arr.tolist()]

    def adapt(self, data: Any) -> None:
        """Builds the vocabulary from a batch of strings (each one a document)."""
        lk = self._lookup_layer
        if lk._fixed_vocab:
            raise ValueError(f"{self.name}: cannot adapt a layer made with a vocabulary")
        lk._adapt_documents([self._tokens(t) for t in self._texts(data)])

    def get_vocabulary(self, include_special_tokens: bool = True) -> list[str]:
        return self._lookup_layer.get_vocabulary(include_special_tokens)

    def vocabulary_size(self) -> int:
        return self._lookup_layer.vocabulary_size()

    def set_vocabulary(self, vocabulary: Any, idf_weights: Any = None) -> None:
        self._lookup_layer.set_vocabulary(vocabulary, idf_weights)

    def __call__(self, inputs, *args, **kwargs):
        _check_host_call(self, inputs, args, kwargs)
        docs = [self._tokens(t) for t in self._texts(inputs)]
        lk = self._lookup_layer
        if self.output_mode != "int":
            return np.stack([lk._encode(lk._lookup(np.array(d, dtype=object)))
                             for d in docs]) if docs else np.zeros((0, lk._depth()), np.float32)
        length = self.output_sequence_length
        if length is None:
            length = max((len(d) for d in docs), default=0)
        out = np.zeros((len(docs), length), np.int64)
        for r, d in enumerate(docs):
            ids = lk._lookup(np.array(d[:length], dtype=object))
            out[r, :ids.size] = ids
        return out

    def host_output_shape(self, sample_shape: tuple[int, ...]) -> tuple[int, ...]:
        if self.output_mode == "int":
            if self.output_sequence_length is None:
                raise ValueError(f"{self.name}: inside a model, output_mode='int' needs "
                                 f"output_sequence_length (a fixed input size for the graph)")
            return (self.output_sequence_length,)
        return (self._lookup_layer._depth(),)

    def get_config(self) -> dict:
        lk = self._lookup_layer.get_config()
        return {**super().get_config(), "max_tokens": lk["max_tokens"],
                "standardize": self.standardize, "split": self.split, "ngrams": None,
                "output_mode": self.output_mode,
                "output_sequence_length": self.output_sequence_length,
                "pad_to_max_tokens": lk["pad_to_max_tokens"], "sparse": False,
                "ragged": False, "encoding": "utf-8", "vocabulary": lk["vocabulary"],
                "idf_weights": lk["idf_weights"]}
