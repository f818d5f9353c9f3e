"""The fast online-store writer encodes exactly what Feast's own serializers produce."""

from __future__ import annotations

import numpy as np
import pandas as pd
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value

from features.store import encode_double, encode_int64, encode_string, serialize_string_keys


def test_doubles_match_protobuf() -> None:
    values = np.array([0.0, -1.5, 1e300, 3.141592653589793, np.nan, -0.0])
    encoded, text = encode_double(values)
    for v, e, t in zip(values, encoded, text, strict=True):
        if np.isnan(v):
            assert e == b"" and t is None
        else:
            assert e == Value(double_val=v).SerializeToString()
            assert t == str(v)


def test_int64s_match_protobuf() -> None:
    values = np.array([0, 1, 127, 128, 300, -1, -(2**63), 2**63 - 1, 5])
    null = np.zeros(len(values), dtype=bool)
    null[-1] = True
    encoded, text = encode_int64(values, null)
    for v, e, t, n in zip(values.tolist(), encoded, text, null, strict=True):
        assert (e, t) == ((b"", None) if n else (Value(int64_val=v).SerializeToString(), str(v)))


def test_strings_match_protobuf() -> None:
    values = pd.Series(["Champions", "ünïcode", "", None, "Champions"], dtype="string")
    encoded, text = encode_string(values)
    assert encoded[3] == b"" and text[3] is None
    for v, e in zip(["Champions", "ünïcode", ""], encoded[:3], strict=True):
        assert e == Value(string_val=v).SerializeToString()


def test_entity_keys_match_feast_for_one_and_two_join_keys() -> None:
    (one,) = serialize_string_keys(["customer_id"], [["C42"]])
    assert one == serialize_entity_key(
        EntityKey(join_keys=["customer_id"], entity_values=[Value(string_val="C42")]), 3
    )
    # Feast sorts join keys by name; pass them in the other order to check that we do too.
    (two,) = serialize_string_keys(["offer_id", "customer_id"], [["BEEF"], ["C42"]])
    assert two == serialize_entity_key(
        EntityKey(
            join_keys=["offer_id", "customer_id"],
            entity_values=[Value(string_val="BEEF"), Value(string_val="C42")],
        ),
        3,
    )
