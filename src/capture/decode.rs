//! Content decoding of captured bodies with a hard bound on output.
//!
//! Captured copies are stored decoded (gzip, deflate, br, zstd, and stacks of
//! them such as `gzip, br`), so they can be read and queried. Decoders are
//! chained as streaming readers and the chain is read through `take(limit)`:
//! a decompression bomb costs at most `limit` bytes of output and the work to
//! produce them, never the whole expansion.

use std::io::{self, Cursor, Read};

use bytes::Bytes;
use flate2::read::{DeflateDecoder, MultiGzDecoder, ZlibDecoder};

/// Buffer size handed to the brotli decoder.
const BROTLI_BUFFER: usize = 8 * 1024;
/// Largest zstd window accepted: 8 MiB, the bound RFC 9659 sets for HTTP
/// `zstd` content coding; a frame asking for more is not decoded (raw bytes kept).
const ZSTD_WINDOW_LOG_MAX: u32 = 23;

/// One content coding, as named in `Content-Encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Coding {
    Gzip,
    Deflate,
    Brotli,
    Zstd,
}

impl Coding {
    /// `None` for `identity`; `Err` for a coding we cannot decode.
    fn parse(token: &str) -> Result<Option<Self>, ()> {
        match token.to_ascii_lowercase().as_str() {
            "identity" => Ok(None),
            "gzip" | "x-gzip" => Ok(Some(Self::Gzip)),
            "deflate" => Ok(Some(Self::Deflate)),
            "br" => Ok(Some(Self::Brotli)),
            "zstd" => Ok(Some(Self::Zstd)),
            _ => Err(()),
        }
    }

    fn wrap<'a>(self, inner: Box<dyn Read + 'a>) -> io::Result<Box<dyn Read + 'a>> {
        Ok(match self {
            Self::Gzip => Box::new(MultiGzDecoder::new(inner)),
            Self::Deflate => deflate(inner)?,
            Self::Brotli => Box::new(brotli::Decompressor::new(inner, BROTLI_BUFFER)),
            Self::Zstd => {
                let mut d = zstd::stream::read::Decoder::new(inner)?;
                d.window_log_max(ZSTD_WINDOW_LOG_MAX)?;
                Box::new(d)
            }
        })
    }
}

/// Decode a captured body for storage, producing at most `limit` bytes.
///
/// `content_encoding` is the header value (several headers joined with `,`),
/// codings listed in the order they were applied. No header or `identity`:
/// the raw bytes cut at `limit`. An unknown coding, or data that does not
/// decode from its first byte: the raw bytes cut at `limit`. Data that
/// decodes for a while and then fails (typically a capture cut short): the
/// part that decoded.
pub fn decode_body(content_encoding: Option<&str>, raw: &[u8], limit: usize) -> Bytes {
    let cut = || Bytes::copy_from_slice(&raw[..raw.len().min(limit)]);
    let Some(header) = content_encoding else {
        return cut();
    };
    let mut codings = Vec::new();
    for token in header.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        match Coding::parse(token) {
            Ok(Some(c)) => codings.push(c),
            Ok(None) => {}
            Err(()) => return cut(),
        }
    }
    if codings.is_empty() || raw.is_empty() || limit == 0 {
        return cut();
    }
    let capacity = limit.min(raw.len().saturating_mul(4)).min(1 << 20);
    match decode_chain(&codings, Box::new(raw), limit, capacity) {
        Some(out) => Bytes::from(out),
        None => cut(),
    }
}

/// Undo `codings` (in applied order) on `source`, reading at most `limit`
/// bytes of output. `None` when nothing at all decoded.
fn decode_chain<'a>(
    codings: &[Coding],
    source: Box<dyn Read + 'a>,
    limit: usize,
    capacity: usize,
) -> Option<Vec<u8>> {
    let mut reader = source;
    for coding in codings.iter().rev() {
        reader = coding.wrap(reader).ok()?;
    }
    let mut out = Vec::with_capacity(capacity);
    match reader.take(limit as u64).read_to_end(&mut out) {
        Ok(_) => Some(out),
        // Bytes read before the error stay in `out`.
        Err(_) if !out.is_empty() => Some(out),
        Err(_) => None,
    }
}

/// `deflate` in the wild is zlib-wrapped (RFC 9110) or, from some servers,
/// raw DEFLATE: look at the first two bytes to tell which, then put them back.
fn deflate<'a>(mut inner: Box<dyn Read + 'a>) -> io::Result<Box<dyn Read + 'a>> {
    let mut head = [0u8; 2];
    let mut n = 0;
    while n < head.len() {
        match inner.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let zlib = n == 2 && is_zlib_header(head[0], head[1]);
    let rewound = Cursor::new(head[..n].to_vec()).chain(inner);
    Ok(if zlib {
        Box::new(ZlibDecoder::new(rewound))
    } else {
        Box::new(DeflateDecoder::new(rewound))
    })
}

/// RFC 1950: CM = 8 (deflate), CINFO ≤ 7, and the header is a multiple of 31.
fn is_zlib_header(cmf: u8, flg: u8) -> bool {
    cmf & 0x0f == 8 && cmf >> 4 <= 7 && ((u16::from(cmf) << 8) | u16::from(flg)) % 31 == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::{DeflateEncoder, GzEncoder, ZlibEncoder};
    use flate2::Compression;
    use std::io::Write;

    fn sample() -> Vec<u8> {
        lines(2000)
    }

    fn lines(n: usize) -> Vec<u8> {
        let mut v = Vec::new();
        for i in 0..n {
            v.extend_from_slice(format!("data: {{\"n\":{i},\"text\":\"héllo\"}}\n\n").as_bytes());
        }
        v
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).expect("gzip");
        e.finish().expect("gzip")
    }

    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut e = ZlibEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).expect("zlib");
        e.finish().expect("zlib")
    }

    fn raw_deflate(data: &[u8]) -> Vec<u8> {
        let mut e = DeflateEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).expect("deflate");
        e.finish().expect("deflate")
    }

    fn br(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        {
            let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
            w.write_all(data).expect("br");
        }
        out
    }

    fn zstd(data: &[u8]) -> Vec<u8> {
        zstd::stream::encode_all(data, 3).expect("zstd")
    }

    #[test]
    fn each_encoding_roundtrips() {
        let body = sample();
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("gzip", gzip(&body)),
            ("x-gzip", gzip(&body)),
            ("GZIP", gzip(&body)),
            ("deflate", zlib(&body)),
            ("deflate", raw_deflate(&body)),
            ("br", br(&body)),
            ("zstd", zstd(&body)),
            ("identity", body.clone()),
            ("", body.clone()),
        ];
        for (enc, encoded) in cases {
            assert_ne!(encoded.len(), 0);
            let out = decode_body(Some(enc), &encoded, 1 << 20);
            assert_eq!(out.as_ref(), body.as_slice(), "{enc}");
        }
        assert_eq!(decode_body(None, &body, 1 << 20).as_ref(), body.as_slice());
    }

    #[test]
    fn stacked_encodings_are_undone_in_reverse() {
        let body = sample();
        let gz_then_br = br(&gzip(&body));
        assert_eq!(
            decode_body(Some("gzip, br"), &gz_then_br, 1 << 20).as_ref(),
            body.as_slice()
        );
        let three = zstd(&zlib(&gzip(&body)));
        assert_eq!(
            decode_body(Some("gzip,deflate , identity, zstd"), &three, 1 << 20).as_ref(),
            body.as_slice()
        );
        // Stacked and cut.
        assert_eq!(
            decode_body(Some("gzip, br"), &gz_then_br, 100).as_ref(),
            &body[..100]
        );
    }

    #[test]
    fn output_is_cut_at_limit() {
        let body = sample();
        for (enc, encoded) in [
            ("gzip", gzip(&body)),
            ("br", br(&body)),
            ("zstd", zstd(&body)),
        ] {
            let out = decode_body(Some(enc), &encoded, 1000);
            assert_eq!(out.as_ref(), &body[..1000], "{enc}");
        }
        assert_eq!(decode_body(None, &body, 10).as_ref(), &body[..10]);
        assert!(decode_body(Some("gzip"), &gzip(&body), 0).is_empty());
    }

    #[test]
    fn unknown_or_undecodable_gives_raw_bytes_cut() {
        let body = sample();
        assert_eq!(
            decode_body(Some("compress"), &body, 50).as_ref(),
            &body[..50]
        );
        assert_eq!(
            decode_body(Some("gzip, foo"), &body, 50).as_ref(),
            &body[..50]
        );
        for enc in ["gzip", "deflate", "br", "zstd", "gzip, br"] {
            let garbage = b"\xff\xfe not compressed at all \x00\x01\x02 plus some more text";
            assert_eq!(
                decode_body(Some(enc), garbage, 20).as_ref(),
                &garbage[..20],
                "{enc}"
            );
        }
        assert!(decode_body(Some("gzip"), b"", 100).is_empty());
    }

    #[test]
    fn truncated_capture_keeps_what_decoded() {
        // Larger than one zstd block (128 KiB), so a prefix holds whole blocks.
        let body = lines(20_000);
        for (enc, encoded) in [
            ("gzip", gzip(&body)),
            ("br", br(&body)),
            ("zstd", zstd(&body)),
        ] {
            let half = &encoded[..encoded.len() / 2];
            let out = decode_body(Some(enc), half, 1 << 20);
            assert!(!out.is_empty(), "{enc}");
            assert!(out.len() < body.len(), "{enc}");
            assert_eq!(out.as_ref(), &body[..out.len()], "{enc}");
        }
    }

    /// 1 GiB of zeros as 1024 gzip members of 1 MiB each (legal gzip, read by
    /// every client): decoding stops at the limit.
    #[test]
    fn gzip_bomb_is_bounded() {
        let member = gzip(&vec![0u8; 1 << 20]);
        let bomb: Vec<u8> = member
            .iter()
            .copied()
            .cycle()
            .take(member.len() * 1024)
            .collect();
        assert!(bomb.len() < 2 << 20, "bomb is {} bytes", bomb.len());
        let out = decode_body(Some("gzip"), &bomb, 65_536);
        assert_eq!(out.len(), 65_536);
        assert!(out.iter().all(|b| *b == 0));
    }

    /// Counts what the decoders pull from their input.
    struct Counting<'a> {
        inner: &'a [u8],
        read: std::rc::Rc<std::cell::Cell<usize>>,
    }

    impl Read for Counting<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.inner.read(buf)?;
            self.read.set(self.read.get() + n);
            Ok(n)
        }
    }

    /// The work is bounded too: decoding 64 KiB of a 1 GiB bomb pulls only
    /// the first members from the input, it never inflates the rest.
    #[test]
    fn bomb_input_is_read_lazily() {
        let member = gzip(&vec![0u8; 1 << 20]);
        let bomb: Vec<u8> = member
            .iter()
            .copied()
            .cycle()
            .take(member.len() * 1024)
            .collect();
        let read = std::rc::Rc::new(std::cell::Cell::new(0));
        let source = Counting {
            inner: &bomb,
            read: read.clone(),
        };
        let out = decode_chain(&[Coding::Gzip], Box::new(source), 65_536, 0).expect("decoded");
        assert_eq!(out.len(), 65_536);
        assert!(
            read.get() <= 2 * member.len() + 64 * 1024,
            "read {} of {} input bytes",
            read.get(),
            bomb.len()
        );
    }

    /// One zstd frame and one brotli stream expanding to 1 GiB / 256 MiB.
    #[test]
    fn zstd_and_brotli_bombs_are_bounded() {
        let mut z = Vec::new();
        zstd::stream::copy_encode(io::repeat(0).take(1 << 30), &mut z, 1).expect("zstd");
        assert_eq!(decode_body(Some("zstd"), &z, 65_536).len(), 65_536);

        let mut b = Vec::new();
        {
            let mut w = brotli::CompressorWriter::new(&mut b, 1 << 16, 1, 22);
            let chunk = vec![0u8; 1 << 20];
            for _ in 0..256 {
                w.write_all(&chunk).expect("br");
            }
        }
        assert_eq!(decode_body(Some("br"), &b, 65_536).len(), 65_536);
        // Stacked bomb: gzip inside br.
        let stacked = br(&gzip(&vec![0u8; 64 << 20]));
        assert_eq!(decode_body(Some("gzip, br"), &stacked, 4096).len(), 4096);
    }

    #[test]
    fn zlib_header_detection() {
        assert!(is_zlib_header(0x78, 0x9c));
        assert!(is_zlib_header(0x78, 0x01));
        assert!(is_zlib_header(0x78, 0xda));
        assert!(!is_zlib_header(0x1f, 0x8b));
        assert!(!is_zlib_header(0x78, 0x00));
    }
}
