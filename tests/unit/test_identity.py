"""Unit tests for etl.core.identity (RUN1 identity, RUN2 partner routing, RUN8 odd keys)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import pytest

from etl.core.identity import decode_event_key, file_id_for, partner_from_key
from etl.errors import InvalidEvent


def _expected(key: str, tag: str) -> str:
    return hashlib.sha256(f"{key}\0{tag}".encode()).hexdigest()[:32]


class TestFileIdFor:
    def test_is_first_32_hex_of_sha256_of_key_version(self) -> None:
        fid = file_id_for("incoming/acme/f.csv", "v1", "etag1")
        assert fid == _expected("incoming/acme/f.csv", "v1")
        assert len(fid) == 32
        assert all(c in "0123456789abcdef" for c in fid)

    def test_RUN1_DR2_same_key_and_version_in_two_buckets_same_id(self) -> None:
        # A replicated object keeps key and version id: the primary and the DR region must agree
        # on its id. The bucket is not an argument at all; hashing it again would change the id.
        import inspect

        assert "bucket" not in inspect.signature(file_id_for).parameters
        primary = file_id_for("incoming/acme/f.csv", "3HL4kqtJlcpXroDTDmJ", None)
        assert primary == _expected("incoming/acme/f.csv", "3HL4kqtJlcpXroDTDmJ")
        for bucket in ("etl-data-dev-123-us-east-1", "etl-data-dev-123-eu-west-1"):
            assert (
                hashlib.sha256(f"{bucket}\0incoming/acme/f.csv\03HL4kqtJlcpXroDTDmJ".encode()).hexdigest()[
                    :32
                ]
                != primary
            )

    def test_deterministic_across_processes_and_hash_seeds(self) -> None:
        # Same id in another interpreter with another hash seed (no hash(), no randomness, no
        # clock), and distinct ids for distinct versions and keys.
        here = file_id_for("incoming/x/f.csv", "v1", None)
        code = "from etl.core.identity import file_id_for; print(file_id_for('incoming/x/f.csv', 'v1', None))"
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        for seed in ("1", "2"):
            env = {**os.environ, "PYTHONHASHSEED": seed}
            out = subprocess.run(
                [sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True, check=True
            )
            assert out.stdout.strip() == here
        others = {file_id_for("incoming/x/f.csv", v, None) for v in ("v2", "v3")}
        others.add(file_id_for("incoming/x/g.csv", "v1", None))
        assert here not in others and len(others) == 3

    def test_version_id_wins_over_etag(self) -> None:
        assert file_id_for("k", "v1", "e1") == file_id_for("k", "v1", "e2")
        assert file_id_for("k", "v1", "e1") != file_id_for("k", "v2", "e1")

    def test_etag_used_without_version_and_quotes_ignored(self) -> None:
        assert file_id_for("k", None, "abc") == _expected("k", "abc")
        # HeadObject returns the ETag quoted, events carry it bare: same object, same id.
        assert file_id_for("k", None, '"abc"') == file_id_for("k", None, "abc")
        assert file_id_for("k", "", "abc") == _expected("k", "abc")

    def test_neither_version_nor_etag(self) -> None:
        assert file_id_for("k", None, None) == _expected("k", "")

    def test_separator_prevents_concatenation_collisions(self) -> None:
        assert file_id_for("k1", "", None) != file_id_for("k", "1", None)

    def test_key_and_version_matter(self) -> None:
        base = file_id_for("k", "v", None)
        assert file_id_for("k2", "v", None) != base
        assert file_id_for("k", "v2", None) != base

    def test_non_ascii_key_is_hashed_as_utf8(self) -> None:
        key = "incoming/acme/résumé 2024.csv"
        assert file_id_for(key, "v", None) == _expected(key, "v")


class TestDecodeEventKey:
    @pytest.mark.parametrize(
        ("raw", "decoded"),
        [
            ("incoming/acme/file.csv", "incoming/acme/file.csv"),
            ("incoming/acme/my+file.csv", "incoming/acme/my file.csv"),
            ("incoming/acme/a%2Bb.csv", "incoming/acme/a+b.csv"),
            ("incoming/acme/r%C3%A9sum%C3%A9.csv", "incoming/acme/résumé.csv"),
            ("incoming/acme/%E6%97%A5%E6%9C%AC+%282%29.csv", "incoming/acme/日本 (2).csv"),
            ("incoming/acme/100%25.csv", "incoming/acme/100%.csv"),
            ("incoming/acme/x%3Dy%26z.csv.gz", "incoming/acme/x=y&z.csv.gz"),
        ],
    )
    def test_decodes_form_encoding(self, raw: str, decoded: str) -> None:
        assert decode_event_key(raw) == decoded

    def test_invalid_utf8_escape_is_invalid_event(self) -> None:
        with pytest.raises(InvalidEvent, match="not URL-encoded UTF-8"):
            decode_event_key("incoming/acme/%FF.csv")

    def test_id_of_encoded_and_decoded_forms_match_after_decoding(self) -> None:
        key = decode_event_key("incoming/acme/Q1+r%C3%A9sum%C3%A9.csv")
        assert file_id_for(key, "v", None) == _expected("incoming/acme/Q1 résumé.csv", "v")


class TestPartnerFromKey:
    @pytest.mark.parametrize(
        ("key", "partner"),
        [
            ("incoming/acme_bank/2024/01/f.csv", "acme_bank"),
            ("incoming/acme-bank/f.csv.gz", "acme-bank"),
            ("incoming/ACME/f.csv", "acme"),
            ("incoming/bank42/f.csv", "bank42"),
            ("incoming/file.csv", "default"),
            ("incoming/my file.csv", "default"),
            ("incoming//f.csv", "default"),
            ("incoming/bank a/f.csv", "default"),
            ("incoming/../etc/f.csv", "default"),
            ("incoming/bänk/f.csv", "default"),
            ("incoming/a.b/f.csv", "default"),
            ("incoming/" + "x" * 65 + "/f.csv", "default"),
            ("elsewhere/acme/f.csv", "default"),
            ("processed/acme/f.csv", "default"),
        ],
    )
    def test_partner(self, key: str, partner: str) -> None:
        assert partner_from_key(key) == partner

    def test_partner_from_decoded_event_key_with_spaces(self) -> None:
        assert partner_from_key(decode_event_key("incoming/acme/daily+report+%C3%A9.csv")) == "acme"
