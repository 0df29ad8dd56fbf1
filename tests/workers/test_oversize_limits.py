"""The header limits a stage accepts (workers.oversize.too_many_headers): exact at the byte, whichever way the
size is reached (the quick bound of 4 bytes a character, or the names' real UTF-8)."""
from workers.oversize import HEADER_OVERHEAD, header_limits, headers_size, too_many_headers


def test_the_limits_hold_at_the_byte_for_ascii_and_multibyte_names(settings):
    settings.KAFKA_MAX_HEADERS, settings.KAFKA_MAX_HEADER_BYTES = 3, 100
    ascii_name = [("trace", b"x" * (100 - 5 - HEADER_OVERHEAD))]
    assert headers_size(ascii_name) == 100 and too_many_headers(ascii_name) is None
    assert "101 bytes, over the 100-byte limit" in too_many_headers([("trace", ascii_name[0][1] + b"x")])

    # 'é' is 2 bytes: 4 x len(name) overestimates, so the exact size decides.
    wide = [("é" * 10, b"v" * (100 - 20 - HEADER_OVERHEAD))]
    assert headers_size(wide) == 100 and too_many_headers(wide) is None
    assert too_many_headers([("é" * 10, wide[0][1] + b"v")]) is not None

    assert "4 headers, over the limit of 3" in too_many_headers([("a", b"")] * 4)
    assert too_many_headers([]) is None


def test_limits_read_once_for_a_batch_are_the_ones_used(settings):
    settings.KAFKA_MAX_HEADERS, settings.KAFKA_MAX_HEADER_BYTES = 10, 1000
    limits = header_limits()
    settings.KAFKA_MAX_HEADERS = 1
    assert too_many_headers([("a", b""), ("b", b"")], limits) is None  # the batch's reading
    assert too_many_headers([("a", b""), ("b", b"")]) is not None  # a fresh reading
