"""Unit tests for etl.core.header (RUN2 header validation, RUN8 bad input).

Uses a minimal Schema-like object (only the attributes parse_header reads), so these tests do
not depend on etl.core.schema.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import tarfile
from dataclasses import dataclass, field

import pytest

from etl.core.header import HeaderInfo, parse_header
from etl.errors import EmptyFile, InvalidEncoding, MalformedCsv, RecordTooLarge, SchemaMismatch

BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class FakeSchema:
    source_columns: list[str] = field(default_factory=lambda: ["id", "amount", "currency"])
    delimiter: str = ","
    schema_id: str = "test_v1"


SCHEMA = FakeSchema()


def parse(data: bytes, schema: FakeSchema = SCHEMA, head: int | None = None) -> HeaderInfo:
    return parse_header(data if head is None else data[:head], schema, len(data))


class TestValidHeaders:
    def test_lf(self) -> None:
        info = parse(b"id,amount,currency\n1,2.50,USD\n")
        assert info == HeaderInfo(
            header_bytes=19, columns=["id", "amount", "currency"], has_bom=False, crlf=False
        )

    def test_crlf_and_bom(self) -> None:
        data = BOM + b"id,amount,currency\r\n1,2.50,USD\r\n"
        info = parse(data)
        assert info.header_bytes == 3 + 20
        assert data[: info.header_bytes].endswith(b"\r\n")
        assert info.has_bom and info.crlf
        assert info.columns == ["id", "amount", "currency"]

    def test_quoted_header_names(self) -> None:
        info = parse(b'"id","amount",currency\n1,2,USD\n')
        assert info.columns == ["id", "amount", "currency"]
        assert info.header_bytes == 23

    def test_quoted_name_with_delimiter_newline_and_doubled_quote(self) -> None:
        schema = FakeSchema(source_columns=["a,b", 'say "hi"', "multi\nline"])
        data = b'"a,b","say ""hi""","multi\nline"\r\nx,y,z\r\n'
        info = parse(data, schema)
        assert info.columns == schema.source_columns
        assert info.header_bytes == data.index(b"x,y,z")
        assert info.crlf

    def test_other_delimiter(self) -> None:
        info = parse(b"id;amount;currency\n1;2;USD\n", FakeSchema(delimiter=";"))
        assert info.columns == ["id", "amount", "currency"]

    def test_tab_delimiter(self) -> None:
        info = parse(b"id\tamount\tcurrency\n1\t2\tUSD\n", FakeSchema(delimiter="\t"))
        assert info.columns == ["id", "amount", "currency"]

    def test_head_shorter_than_object_and_cut_inside_utf8_char(self) -> None:
        data = "id,amount,currency\n1,2,é€\n".encode()
        # The head ends in the middle of the 3-byte euro sign: not an encoding error.
        info = parse_header(data[:-3], SCHEMA, len(data) + 1000)
        assert info.header_bytes == 19

    def test_non_ascii_column_names(self) -> None:
        schema = FakeSchema(source_columns=["montant", "devise", "libellé"])
        assert parse("montant,devise,libellé\n1,EUR,café\n".encode(), schema).columns == schema.source_columns

    def test_header_exactly_at_head_end_with_more_data(self) -> None:
        data = b"id,amount,currency\n" + b"1,2,USD\n" * 10
        assert parse_header(data[:19], SCHEMA, len(data)).header_bytes == 19


class TestSchemaMismatch:
    def test_missing_column_named(self) -> None:
        with pytest.raises(SchemaMismatch, match=r"missing columns: 'currency'") as exc:
            parse(b"id,amount\n1,2\n")
        assert "test_v1" in str(exc.value)

    def test_unexpected_column_named(self) -> None:
        with pytest.raises(SchemaMismatch, match=r"unexpected columns: 'extra'"):
            parse(b"id,amount,currency,extra\n1,2,USD,x\n")

    def test_missing_and_unexpected_together(self) -> None:
        with pytest.raises(SchemaMismatch) as exc:
            parse(b"id,amt,currency\n1,2,USD\n")
        assert "missing columns: 'amount'" in str(exc.value)
        assert "unexpected columns: 'amt'" in str(exc.value)

    def test_out_of_order_names_positions(self) -> None:
        with pytest.raises(SchemaMismatch, match="out of order") as exc:
            parse(b"id,currency,amount\n1,USD,2\n")
        msg = str(exc.value)
        assert "'currency' at position 2 (expected 3)" in msg
        assert "'amount' at position 3 (expected 2)" in msg
        assert "'id'" not in msg.split("Expected")[0]

    def test_duplicate_column(self) -> None:
        with pytest.raises(SchemaMismatch, match=r"duplicate columns: 'id'"):
            parse(b"id,amount,currency,id\n1,2,USD,1\n")

    def test_case_and_space_differences_are_mismatches_with_hint(self) -> None:
        with pytest.raises(SchemaMismatch, match="case and surrounding spaces matter"):
            parse(b"ID,amount ,currency\n1,2,USD\n")

    def test_wrong_delimiter_hint(self) -> None:
        with pytest.raises(SchemaMismatch, match="delimiter is ',' but the header contains ';'"):
            parse(b"id;amount;currency\n1;2;USD\n")

    def test_empty_header_line(self) -> None:
        with pytest.raises(SchemaMismatch, match="missing columns: 'id', 'amount', 'currency'"):
            parse(b"\n1,2,USD\n")

    def test_message_lists_expected_columns(self) -> None:
        with pytest.raises(SchemaMismatch, match=r"Expected 3 columns: 'id', 'amount', 'currency'"):
            parse(b"a,b,c\n1,2,3\n")

    def test_schema_without_id(self) -> None:
        class Bare:
            source_columns = ("x",)
            delimiter = ","

        with pytest.raises(SchemaMismatch, match="header does not match the columns: missing"):
            parse_header(b"y\n1\n", Bare(), 4)

    def test_long_lists_are_truncated(self) -> None:
        schema = FakeSchema(source_columns=[f"c{i}" for i in range(40)])
        with pytest.raises(SchemaMismatch, match="and 28 more"):
            parse(b"z\n1\n", schema)


class TestEmpty:
    def test_zero_bytes(self) -> None:
        with pytest.raises(EmptyFile, match="0 bytes"):
            parse_header(b"", SCHEMA, 0)

    def test_bom_only(self) -> None:
        with pytest.raises(EmptyFile):
            parse(BOM)

    @pytest.mark.parametrize(
        "data",
        [
            b"id,amount,currency\n",
            b"id,amount,currency\r\n",
            b"id,amount,currency",
            BOM + b"id,amount,currency\r\n",
            b"id,amount,currency\n\n\r\n",
        ],
    )
    def test_header_only(self, data: bytes) -> None:
        with pytest.raises(EmptyFile, match="no data rows"):
            parse(data)

    def test_header_only_detected_from_sizes_with_short_head(self) -> None:
        with pytest.raises(EmptyFile, match="no data rows"):
            parse_header(b"id,amount,currency\n", SCHEMA, 19)

    def test_wrong_header_only_file_reports_the_mismatch(self) -> None:
        with pytest.raises(SchemaMismatch):
            parse(b"foo,bar\n")

    def test_empty_head_of_non_empty_object_is_a_caller_bug(self) -> None:
        with pytest.raises(ValueError):
            parse_header(b"", SCHEMA, 10)


class TestBadBytes:
    def test_latin1_in_a_data_row_is_left_to_the_row_check(self) -> None:
        # RUN10: a bad byte in a data row gets the same outcome anywhere in the file (a
        # row-level reject in ProcessChunk), so the head's data rows are not checked here.
        info = parse("id,amount,currency\n1,2,é\n".encode("latin-1"))
        assert info.columns == ["id", "amount", "currency"]

    def test_latin1_in_the_header_line(self) -> None:
        with pytest.raises(InvalidEncoding, match="invalid UTF-8 at byte offset 14"):
            parse("id,amount,curréncy\n1,2,3\n".encode("latin-1"))

    def test_invalid_utf8_in_header(self) -> None:
        with pytest.raises(InvalidEncoding, match="offset 2"):
            parse(b"id\xff,amount,currency\n1,2,3\n")

    def test_nul_byte_in_the_header_line(self) -> None:
        with pytest.raises(InvalidEncoding, match="NUL byte at offset 3 of the header line"):
            parse(b"id,\x00amount,currency\n1,2,3\n")

    def test_nul_byte_in_a_data_row_is_left_to_the_row_check(self) -> None:
        assert parse(b"id,amount,currency\n1,\x00,3\n").header_bytes == 19

    @pytest.mark.parametrize(
        ("encoding", "cause"),
        [
            ("utf-16", "UTF-16 \\(little-endian\\) byte order mark"),
            ("utf-16-be", "UTF-16 text without a byte order mark \\(big-endian"),
            ("utf-16-le", "UTF-16 text without a byte order mark \\(little-endian"),
            ("utf-32", "UTF-32 \\(little-endian\\) byte order mark"),
        ],
    )
    def test_utf16_and_utf32_name_the_encoding(self, encoding: str, cause: str) -> None:
        with pytest.raises(InvalidEncoding, match=cause):
            parse("id,amount,currency\n1,2,3\n".encode(encoding))

    def test_utf16_be_bom(self) -> None:
        with pytest.raises(InvalidEncoding, match="UTF-16 \\(big-endian\\) byte order mark"):
            parse(b"\xfe\xff" + "id,amount,currency\n1,2,3\n".encode("utf-16-be"))

    def test_gzip_body_under_csv_name(self) -> None:
        with pytest.raises(InvalidEncoding, match=r"gzip magic bytes 1f 8b.*\.tgz"):
            parse(gzip.compress(b"id,amount,currency\n1,2,3\n"))

    def test_tgz_names_gzip(self) -> None:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            body = b"id,amount,currency\n1,2,3\n"
            info = tarfile.TarInfo("x.csv")
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
        with pytest.raises(InvalidEncoding, match="gzip magic bytes"):
            parse(buf.getvalue())
        # The same archive decompressed (a .tar.gz read as .gz): a tar archive.
        with pytest.raises(InvalidEncoding, match="tar archive"):
            parse(gzip.decompress(buf.getvalue()))

    @pytest.mark.parametrize(
        ("data", "cause"),
        [
            (b"PK\x03\x04\x14\x00\x00\x00", "zip magic bytes"),
            (bz2.compress(b"id,amount,currency\n1,2,3\n"), "bzip2 magic bytes"),
            (lzma.compress(b"id,amount,currency\n1,2,3\n"), "xz magic bytes"),
            (b"PAR1\x15\x04", "Parquet"),
        ],
    )
    def test_other_containers_are_named(self, data: bytes, cause: str) -> None:
        with pytest.raises(InvalidEncoding, match=cause):
            parse(data)

    def test_a_header_named_like_bzip2_is_not_refused(self) -> None:
        assert parse(
            b"BZh,amount,currency\n1,2,3\n", FakeSchema(source_columns=["BZh", "amount", "currency"])
        )

    def test_random_binary_garbage(self) -> None:
        garbage = bytes((i * 7919 + 13) % 256 for i in range(4096))
        with pytest.raises(InvalidEncoding):
            parse(garbage)

    def test_truncated_multibyte_char_in_the_header_of_a_whole_object(self) -> None:
        with pytest.raises(InvalidEncoding):
            parse("id,amount,currency€".encode()[:-1])


class TestMalformed:
    def test_unterminated_quote_in_header(self) -> None:
        with pytest.raises(MalformedCsv, match="unterminated quoted field in the header"):
            parse(b'id,"amount,currency\n1,2,USD\n')

    def test_unterminated_quote_in_header_with_short_head(self) -> None:
        data = b'id,"amount,currency\n1,2,USD\n' + b"3,4,EUR\n" * 100
        with pytest.raises(MalformedCsv, match="unterminated quoted field"):
            parse(data, head=64)

    def test_unterminated_quote_in_header_only_file(self) -> None:
        with pytest.raises(MalformedCsv):
            parse(b'id,"amount,currency')

    def test_text_after_closing_quote(self) -> None:
        with pytest.raises(MalformedCsv, match="bad quoting"):
            parse(b'id,"amount"x,currency\n1,2,USD\n')

    def test_bare_cr_line_endings(self) -> None:
        with pytest.raises(MalformedCsv, match="bare CR"):
            parse(b"id,amount,currency\r1,2,USD\r")

    def test_bare_cr_inside_header_line(self) -> None:
        with pytest.raises(MalformedCsv, match="bare CR"):
            parse(b"id,amount\rx,currency\n1,2,USD\n")


class TestTooLarge:
    def test_no_terminator_within_head(self) -> None:
        data = b"id,amount,currency" + b",x" * 1000 + b"\n1,2,3\n"
        with pytest.raises(RecordTooLarge, match="no line terminator in the first 64 bytes"):
            parse(data, head=64)

    def test_terminator_just_inside_head_is_fine(self) -> None:
        data = b"id,amount,currency\n1,2,3\n"
        assert parse(data, head=19).header_bytes == 19
        with pytest.raises(RecordTooLarge):
            parse(data, head=18)
