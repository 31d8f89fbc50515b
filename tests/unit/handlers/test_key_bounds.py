"""OPS6(b): keys derived from incoming keys stay within S3's 1,024 bytes, deterministically,
uniquely and traceably."""

from __future__ import annotations

from etl.handlers import common

FILE_ID = "0123456789abcdef0123456789abcdef"


def file(name: str, partner: str = "default") -> dict[str, str]:
    key = f"incoming/{partner}/{name}"
    return {"key": key, "original_key": key, "partner": partner, "file_id": FILE_ID}


def test_OPS6_a_name_near_1024_bytes_is_shortened_with_a_hash_keeping_its_extension() -> None:
    # The incoming key itself is legal: 1,024 bytes, multi-byte characters included.
    stem = "é" * 500  # 1,000 bytes
    name = stem + "x" * (1024 - len("incoming/default/") - 1000 - len(".csv.gz")) + ".csv.gz"
    assert len(file(name)["key"].encode()) == 1024
    for derive in (common.processed_key, common.failed_key):
        key = derive(file(name))
        assert len(key.encode("utf-8")) <= 1024, derive
        assert key == derive(file(name))  # deterministic: a retry moves to the same key
        assert key.endswith(".csv.gz") and "~" in key
        prefix = key.rsplit("/", 1)[0] + "/"
        assert key[len(prefix) :].startswith("é" * 100)  # traceable: the name's beginning stays
        key.encode("utf-8").decode("utf-8")  # cut on a character boundary
    # Unique: two names differing only at the end get different keys.
    other = name[:-8] + "y.csv.gz"
    assert common.processed_key(file(other)) != common.processed_key(file(name))


def test_OPS6_short_names_are_unchanged() -> None:
    assert common.processed_key(file("daily.csv")) == f"processed/default/{FILE_ID}/daily.csv"
    assert common.failed_key(file("daily.csv")) == f"failed/default/{FILE_ID}/daily.csv"


def test_OPS6_a_long_partner_segment_is_shortened_everywhere() -> None:
    partner = "p" * 900
    name = "n" * 80 + ".csv"
    f = file(name, partner)
    keys = [
        common.processed_key(f),
        common.failed_key(f),
        common.output_key("transactions", partner, FILE_ID, 1),
        common.rejects_key(partner, FILE_ID, 1),
        common.manifest_key(partner, FILE_ID),
    ]
    for key in keys:
        assert len(key.encode()) <= 1024, key
        assert ("p" * 200) in key and "p" * 300 not in key
    assert common.processed_key(f).endswith("/" + name)  # the name itself fits now


def test_OPS6_shorten_segment_bounds() -> None:
    assert common.shorten_segment("abc", 3) == "abc"
    short = common.shorten_segment("a" * 100, 40)
    assert len(short) == 40 and short.startswith("a" * 23) and short[23] == "~"
