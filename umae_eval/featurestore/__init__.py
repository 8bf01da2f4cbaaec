"""A resumable on-disk feature store and multi-process extraction.

Example
-------
>>> from umae_eval.featurestore import ArrayImages, extract_to_store, store_key
>>> key = store_key(enc, data_fingerprint=ds.fingerprint, split="test", n=len(ds.x_test),
...                 device="cpu")                                        # doctest: +SKIP
>>> store = extract_to_store(enc, ArrayImages(ds.x_test), None, key, device="cpu")  # doctest: +SKIP
>>> store.read().shape                                                  # doctest: +SKIP
(10000, 768)

Modules: ``key`` (what a store holds, where it lives), ``store`` (the files, the manifest, the
chunk checksums), ``encode`` (the extraction loop over a DataLoader), ``ranks`` (torchrun),
``extract`` (resume, the multi-process protocol and the in-memory fallback).
"""

from umae_eval.featurestore.encode import (
    DEFAULT_CHUNK_BYTES,
    ArrayImages,
    default_chunk_rows,
)
from umae_eval.featurestore.extract import extract_to_store, stored_features
from umae_eval.featurestore.key import (
    FEATURE_STORE_VERSION,
    StoreKey,
    default_store_dir,
    store_key,
)
from umae_eval.featurestore.single import StoredFeatures
from umae_eval.featurestore.store import FeatureStore, StoreWriteError, open_store

__all__ = [
    "DEFAULT_CHUNK_BYTES",
    "FEATURE_STORE_VERSION",
    "ArrayImages",
    "FeatureStore",
    "StoreKey",
    "StoreWriteError",
    "StoredFeatures",
    "default_chunk_rows",
    "default_store_dir",
    "extract_to_store",
    "open_store",
    "store_key",
    "stored_features",
]
