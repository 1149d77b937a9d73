//! The disk spool: where flows wait while the database is down or the queue is
//! full (or, with `durability: spool-first`, every flow before it is
//! acknowledged), so nothing is lost.
//!
//! `<home>/spool/` (0700) holds numbered segment files
//! (`00000000000000000001.seg`, 0600). A segment starts with [`MAGIC`] and
//! holds records framed so that damage costs one record, not the rest of the
//! segment:
//!
//! ```text
//! [SYNC 4 bytes: FF 'C' 'R' 'D'][version u16 LE][reserved u16][len u32 LE][crc u32 LE][payload]
//! ```
//!
//! The CRC-32 covers version, reserved, len and the payload. The payload
//! (format [`RECORD_VERSION`] 1) is the flow as JSON, decoded tolerantly:
//! unknown fields are ignored and fields this binary knows but the record lacks
//! take their defaults, so segments survive an upgrade that adds fields to
//! `Flow`. JSON is UTF-8 and never contains the byte `0xFF`, so after a
//! corrupt or truncated record the reader scans forward to the next SYNC
//! whose record verifies, and counts each record it gave up in
//! [`Segment::skipped`]. Segments of the first format (`CCPSPL1\n`, no sync
//! marker) are still read, stopping at their first bad record.
//!
//! Appends are fsync'd before they count as spooled. Only the segment being
//! written is open; the others are "sealed" and are replayed oldest first,
//! then deleted once their rows are committed. The spool never grows past
//! `spool_max_bytes`: rows beyond it are dropped and counted.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use crate::flow::Flow;

/// First bytes of every segment this binary writes (framing version 2).
pub const MAGIC: &[u8; 8] = b"CCPSPL2\n";
/// First bytes of a segment of the first framing (read, never written).
pub const MAGIC_V1: &[u8; 8] = b"CCPSPL1\n";
/// Start of every record: `0xFF` never occurs in a JSON payload.
pub const SYNC: [u8; 4] = [0xFF, b'C', b'R', b'D'];
/// Payload format of the records this binary writes (the flow as JSON).
pub const RECORD_VERSION: u16 = 1;
/// SYNC + version + reserved + len + crc.
const RECORD_HEADER: usize = 16;
/// A segment is sealed once it grows past this.
const SEGMENT_BYTES: u64 = 16 << 20;
/// Records larger than this are corrupt by definition.
const MAX_RECORD: u32 = 1 << 30;

/// What one append did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Rows now durable in the spool.
    pub written: u64,
    /// Rows refused because the spool is full.
    pub dropped: u64,
}

/// What reading a sealed segment gave.
#[derive(Debug)]
pub struct Segment {
    /// The segment file (delete it once `flows` are committed).
    pub path: PathBuf,
    /// Its size on disk.
    pub bytes: u64,
    /// The records read, in order.
    pub flows: Vec<Flow>,
    /// Records given up (corrupt, truncated, unreadable).
    pub skipped: u64,
    /// What was wrong with the first record given up, when one was.
    pub corrupt: Option<String>,
}

/// The spool directory and the segment being written.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    /// Bytes in every segment file, including the open one.
    total_bytes: u64,
    /// Next segment number.
    next_seq: u64,
    /// The segment being appended to.
    current: Option<(PathBuf, File, u64)>,
    scratch: Vec<u8>,
}

impl Spool {
    /// Open (creating, 0700) the spool directory; existing segments become replayable.
    pub fn open(dir: &Path, max_bytes: u64) -> io::Result<Self> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let meta = fs::metadata(dir)?;
        if meta.permissions().mode() & 0o077 != 0 {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
        }
        let mut total_bytes = 0;
        let mut max_seq = 0;
        for (seq, path) in list_segments(dir)? {
            total_bytes += fs::metadata(&path).map_or(0, |m| m.len());
            max_seq = max_seq.max(seq);
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            max_bytes,
            total_bytes,
            next_seq: max_seq + 1,
            current: None,
            scratch: Vec::new(),
        })
    }

    /// Bytes held on disk.
    pub fn bytes(&self) -> u64 {
        self.total_bytes
    }

    /// True when there is anything to replay (sealed or open).
    pub fn has_rows(&self) -> bool {
        self.current_has_rows()
            || list_segments(&self.dir).is_ok_and(|s| {
                s.iter()
                    .any(|(_, p)| self.current.as_ref().is_none_or(|c| c.0 != *p))
            })
    }

    fn current_has_rows(&self) -> bool {
        self.current
            .as_ref()
            .is_some_and(|c| c.2 > MAGIC.len() as u64)
    }

    /// Append flows and fsync; rows past `max_bytes` are dropped and counted.
    pub fn append<'a>(
        &mut self,
        flows: impl IntoIterator<Item = &'a Flow>,
    ) -> io::Result<Appended> {
        let mut res = Appended::default();
        self.scratch.clear();
        let mut pending = 0u64;
        for flow in flows {
            let start = self.scratch.len();
            self.scratch.extend_from_slice(&[0; RECORD_HEADER]);
            serde_json::to_writer(&mut self.scratch, flow).map_err(io::Error::other)?;
            let payload_len = self.scratch.len() - start - RECORD_HEADER;
            let record = (payload_len + RECORD_HEADER) as u64;
            let header = if self.current.is_none() {
                MAGIC.len() as u64
            } else {
                0
            };
            let too_big = u32::try_from(payload_len).map_or(true, |l| l > MAX_RECORD);
            if too_big || self.total_bytes + pending + record + header > self.max_bytes {
                self.scratch.truncate(start);
                res.dropped += 1;
                continue;
            }
            let head = &mut self.scratch[start..start + RECORD_HEADER];
            head[..4].copy_from_slice(&SYNC);
            head[4..6].copy_from_slice(&RECORD_VERSION.to_le_bytes());
            head[6..8].copy_from_slice(&[0, 0]);
            head[8..12].copy_from_slice(&(payload_len as u32).to_le_bytes());
            let crc = record_crc(
                &self.scratch[start + 4..start + 12],
                &self.scratch[start + RECORD_HEADER..],
            );
            self.scratch[start + 12..start + 16].copy_from_slice(&crc.to_le_bytes());
            pending += record;
            res.written += 1;
        }
        if self.scratch.is_empty() {
            return Ok(res);
        }
        let scratch = std::mem::take(&mut self.scratch);
        let (_, file, len) = self.open_current()?;
        let wrote = file.write_all(&scratch).and_then(|()| file.sync_data());
        if wrote.is_ok() {
            *len += pending;
        }
        self.scratch = scratch;
        if wrote.is_err() {
            // A torn record ends this segment; later appends start a fresh one.
            self.seal();
        }
        wrote?;
        self.total_bytes += pending;
        if self.current.as_ref().is_some_and(|c| c.2 >= SEGMENT_BYTES) {
            self.seal();
        }
        Ok(res)
    }

    fn open_current(&mut self) -> io::Result<&mut (PathBuf, File, u64)> {
        if self.current.is_none() {
            let path = self.dir.join(format!("{:020}.seg", self.next_seq));
            self.next_seq += 1;
            let mut file = OpenOptions::new()
                .create_new(true)
                .append(true)
                .mode(0o600)
                .custom_flags(nix::libc::O_NOFOLLOW)
                .open(&path)?;
            file.write_all(MAGIC)?;
            file.sync_all()?;
            if let Ok(d) = File::open(&self.dir) {
                let _ = d.sync_all();
            }
            self.total_bytes += MAGIC.len() as u64;
            self.current = Some((path, file, MAGIC.len() as u64));
        }
        self.current
            .as_mut()
            .ok_or_else(|| io::Error::other("no current segment"))
    }

    /// Close the open segment so it can be replayed.
    pub fn seal(&mut self) {
        self.current = None;
    }

    /// The oldest sealed segment, read. Seals the open one when it is the
    /// only one and holds rows.
    pub fn oldest(&mut self) -> io::Result<Option<Segment>> {
        let current = self.current.as_ref().map(|c| c.0.clone());
        let mut segments = list_segments(&self.dir)?;
        segments.retain(|(_, p)| Some(p) != current.as_ref());
        if segments.is_empty() {
            if !self.current_has_rows() {
                return Ok(None);
            }
            self.seal();
            segments = list_segments(&self.dir)?;
        }
        let Some((_, path)) = segments.into_iter().next() else {
            return Ok(None);
        };
        read_segment(&path).map(Some)
    }

    /// Forget a segment whose rows are committed (or which is unreadable).
    pub fn remove(&mut self, seg: &Segment) -> io::Result<()> {
        fs::remove_file(&seg.path)?;
        self.total_bytes = self.total_bytes.saturating_sub(seg.bytes);
        Ok(())
    }

    /// Move a damaged segment aside (kept for inspection, no longer counted).
    pub fn quarantine(&mut self, seg: &Segment) -> io::Result<PathBuf> {
        let to = seg.path.with_extension("corrupt");
        fs::rename(&seg.path, &to)?;
        self.total_bytes = self.total_bytes.saturating_sub(seg.bytes);
        Ok(to)
    }
}

fn record_crc(head: &[u8], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(head);
    h.update(payload);
    h.finalize()
}

/// Segments in the directory, oldest first.
pub fn list_segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut out: Vec<(u64, PathBuf)> = fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name();
            let seq = name.to_str()?.strip_suffix(".seg")?.parse().ok()?;
            Some((seq, e.path()))
        })
        .collect();
    out.sort();
    Ok(out)
}

/// Read every intact record of a segment, skipping (and counting) damaged ones.
pub fn read_segment(path: &Path) -> io::Result<Segment> {
    let mut data = Vec::new();
    File::open(path)?.read_to_end(&mut data)?;
    let mut seg = decode_segment(&data);
    seg.path = path.to_path_buf();
    Ok(seg)
}

/// Decode a whole segment held in memory (the reader behind [`read_segment`]).
pub fn decode_segment(data: &[u8]) -> Segment {
    let mut seg = Segment {
        path: PathBuf::new(),
        bytes: data.len() as u64,
        flows: Vec::new(),
        skipped: 0,
        corrupt: None,
    };
    match data.get(..MAGIC.len()) {
        Some(m) if m == MAGIC => decode_v2(data, &mut seg),
        Some(m) if m == MAGIC_V1 => decode_v1(data, &mut seg),
        _ => {
            seg.skipped = 1;
            seg.corrupt = Some("not a spool segment (bad header)".to_string());
        }
    }
    seg
}

fn decode_v2(data: &[u8], seg: &mut Segment) {
    let mut at = MAGIC.len();
    while at < data.len() {
        match decode_record(data, at) {
            Ok((flow, end)) => {
                seg.flows.push(flow);
                at = end;
            }
            Err((why, end)) => {
                seg.skipped += 1;
                seg.corrupt
                    .get_or_insert_with(|| format!("{why} at byte {at}"));
                at = match end {
                    Some(end) => end,
                    None => find_sync(data, at + 1),
                };
            }
        }
    }
}

/// The next SYNC at or after `from`, or the end of `data`.
fn find_sync(data: &[u8], from: usize) -> usize {
    data.get(from..)
        .and_then(|rest| rest.windows(SYNC.len()).position(|w| w == SYNC))
        .map_or(data.len(), |i| from + i)
}

/// One record at `at`: the flow and where the next record starts, or why not
/// (with the record's end when its frame verified but its payload did not decode).
fn decode_record(data: &[u8], at: usize) -> Result<(Flow, usize), (String, Option<usize>)> {
    let Some(head) = data.get(at..at + RECORD_HEADER) else {
        return Err(("truncated record header".into(), None));
    };
    if head[..4] != SYNC {
        return Err(("no record marker".into(), None));
    }
    let version = u16::from_le_bytes([head[4], head[5]]);
    let len = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
    let crc = u32::from_le_bytes([head[12], head[13], head[14], head[15]]);
    let end = at + RECORD_HEADER + len as usize;
    let payload = if len > MAX_RECORD {
        None
    } else {
        data.get(at + RECORD_HEADER..end)
    };
    let Some(payload) = payload else {
        return Err(("truncated record".into(), None));
    };
    if record_crc(&head[4..12], payload) != crc {
        return Err(("checksum mismatch".into(), None));
    }
    if version != RECORD_VERSION {
        return Err((
            format!("record format {version} is not one this ccproxy reads"),
            Some(end),
        ));
    }
    decode_flow(payload)
        .map(|f| (f, end))
        .map_err(|e| (format!("unreadable record: {e}"), Some(end)))
}

/// First-format segments: `[len][crc][payload]`, no marker; stop at the first bad record.
fn decode_v1(data: &[u8], seg: &mut Segment) {
    let mut at = MAGIC_V1.len();
    while at < data.len() {
        let Some(head) = data.get(at..at + 8) else {
            seg.corrupt = Some(format!("truncated record header at byte {at}"));
            break;
        };
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        let end = at + 8 + len as usize;
        let payload = if len > MAX_RECORD {
            None
        } else {
            data.get(at + 8..end)
        };
        let Some(payload) = payload else {
            seg.corrupt = Some(format!("truncated record at byte {at}"));
            break;
        };
        if crc32fast::hash(payload) != crc {
            seg.corrupt = Some(format!("checksum mismatch at byte {at}"));
            break;
        }
        match decode_flow(payload) {
            Ok(f) => seg.flows.push(f),
            Err(e) => {
                seg.corrupt = Some(format!("unreadable record at byte {at}: {e}"));
                break;
            }
        }
        at = end;
    }
    if seg.corrupt.is_some() {
        // Without markers the rest cannot be told apart: count it as one.
        seg.skipped = 1;
    }
}

/// A flow from a record payload: unknown fields are ignored, and fields the
/// record lacks (written by an older binary) take the defaults of a new flow.
pub fn decode_flow(payload: &[u8]) -> Result<Flow, serde_json::Error> {
    match serde_json::from_slice::<Flow>(payload) {
        Ok(f) => Ok(f),
        Err(first) => {
            let mut value: serde_json::Value = serde_json::from_slice(payload)?;
            let (Some(obj), Some(defaults)) = (value.as_object_mut(), flow_defaults()) else {
                return Err(first);
            };
            let mut filled = false;
            for (k, v) in defaults {
                if !obj.contains_key(k) {
                    obj.insert(k.clone(), v.clone());
                    filled = true;
                }
            }
            if !filled {
                return Err(first);
            }
            serde_json::from_value(value)
        }
    }
}

/// Every field of a new flow, as JSON (the defaults for fields a record lacks).
fn flow_defaults() -> Option<&'static serde_json::Map<String, serde_json::Value>> {
    static DEFAULTS: OnceLock<Option<serde_json::Map<String, serde_json::Value>>> = OnceLock::new();
    DEFAULTS
        .get_or_init(|| {
            let f = Flow::new(crate::flow::Direction::Forward, "", "", "", "");
            match serde_json::to_value(f) {
                Ok(serde_json::Value::Object(m)) => Some(m),
                _ => None,
            }
        })
        .as_ref()
}

/// Shared handle: the writer and the overflow task both append.
pub type SharedSpool = Arc<std::sync::Mutex<Spool>>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::Direction;

    fn flow(i: usize) -> Flow {
        let mut f = Flow::new(
            Direction::Forward,
            "GET",
            &format!("http://h/{i}"),
            "h",
            "/",
        );
        f.response_body = bytes::Bytes::from(vec![i as u8; 100]);
        f
    }

    fn one_segment(n: usize) -> (tempfile::TempDir, PathBuf, Vec<Flow>) {
        let dir = tempfile::tempdir().expect("tmp");
        let mut s = Spool::open(dir.path(), 1 << 20).expect("open");
        let flows: Vec<Flow> = (0..n).map(flow).collect();
        s.append(&flows).expect("append");
        s.seal();
        let (_, path) = list_segments(dir.path()).expect("list").remove(0);
        (dir, path, flows)
    }

    /// Byte offsets where records start.
    fn record_starts(data: &[u8]) -> Vec<usize> {
        let mut out = Vec::new();
        let mut at = MAGIC.len();
        while at < data.len() {
            out.push(at);
            at = find_sync(data, at + 1);
        }
        out
    }

    #[test]
    fn append_seal_replay_remove() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut s = Spool::open(dir.path(), 1 << 20).expect("open");
        let flows: Vec<Flow> = (0..10).map(flow).collect();
        assert_eq!(s.append(&flows[..5]).expect("append").written, 5);
        assert_eq!(s.append(&flows[5..]).expect("append").written, 5);
        assert!(s.has_rows());
        let seg = s.oldest().expect("read").expect("segment");
        assert_eq!(seg.flows, flows);
        assert!(seg.corrupt.is_none());
        assert_eq!(seg.skipped, 0);
        s.remove(&seg).expect("remove");
        assert_eq!(s.bytes(), 0);
        assert!(s.oldest().expect("read").is_none());
        // A reopened spool sees earlier segments.
        s.append(&flows[..1]).expect("append");
        drop(s);
        let mut s = Spool::open(dir.path(), 1 << 20).expect("reopen");
        assert!(s.bytes() > 0);
        assert_eq!(s.oldest().expect("read").expect("seg").flows.len(), 1);
    }

    #[test]
    fn files_are_private() {
        let dir = tempfile::tempdir().expect("tmp");
        let spool = dir.path().join("spool");
        fs::DirBuilder::new()
            .mode(0o755)
            .create(&spool)
            .expect("mkdir");
        let mut s = Spool::open(&spool, 1 << 20).expect("open");
        s.append(&[flow(1)]).expect("append");
        let mode = |p: &Path| fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&spool), 0o700);
        let (_, seg) = list_segments(&spool).expect("list").remove(0);
        assert_eq!(mode(&seg), 0o600);
    }

    #[test]
    fn bound_drops_and_counts() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut s = Spool::open(dir.path(), 2_000).expect("open");
        let flows: Vec<Flow> = (0..20).map(flow).collect();
        let r = s.append(&flows).expect("append");
        assert!(r.dropped > 0 && r.written > 0);
        assert_eq!(r.written + r.dropped, 20);
        assert!(s.bytes() <= 2_000);
    }

    #[test]
    fn a_flipped_bit_anywhere_in_a_record_costs_that_record_only() {
        let (_dir, path, flows) = one_segment(7);
        let data = fs::read(&path).expect("read");
        let starts = record_starts(&data);
        assert_eq!(starts.len(), 7);
        let (s3, e3) = (starts[3], starts[4]);
        // Every byte of the middle record: marker, header, length, crc, payload.
        for at in s3..e3 {
            for bit in [0, 3, 7] {
                let mut bad = data.clone();
                bad[at] ^= 1 << bit;
                let seg = decode_segment(&bad);
                let mut want = flows.clone();
                want.remove(3);
                assert_eq!(seg.flows, want, "byte {at} bit {bit}");
                assert_eq!(seg.skipped, 1, "byte {at} bit {bit}");
                assert!(seg.corrupt.is_some());
            }
        }
    }

    #[test]
    fn a_truncated_tail_costs_the_torn_record() {
        let (_dir, path, flows) = one_segment(4);
        let data = fs::read(&path).expect("read");
        let starts = record_starts(&data);
        for cut in [starts[3] + 2, starts[3] + RECORD_HEADER + 5, data.len() - 1] {
            let seg = decode_segment(&data[..cut]);
            assert_eq!(seg.flows, flows[..3], "cut at {cut}");
            assert_eq!(seg.skipped, 1);
            assert!(seg
                .corrupt
                .as_deref()
                .is_some_and(|c| c.contains("truncated")));
        }
        // Garbage between records is skipped as well.
        let mut spliced = data[..starts[2]].to_vec();
        spliced.extend_from_slice(b"\x00garbage\xff\xff");
        spliced.extend_from_slice(&data[starts[2]..]);
        let seg = decode_segment(&spliced);
        assert_eq!(seg.flows, flows);
        assert_eq!(seg.skipped, 1);
    }

    #[test]
    fn unknown_fields_are_ignored_and_missing_ones_defaulted() {
        let f = flow(9);
        let mut v = serde_json::to_value(&f).expect("ser");
        let obj = v.as_object_mut().expect("object");
        obj.insert(
            "a_field_from_the_future".into(),
            serde_json::json!({"x": 1}),
        );
        obj.remove("ttfb_ms");
        obj.remove("session_id");
        let back = decode_flow(&serde_json::to_vec(&v).expect("ser")).expect("tolerant");
        assert_eq!(back.id, f.id);
        assert_eq!(back.url, f.url);
        assert_eq!(back.response_body, f.response_body);
    }

    #[test]
    fn a_record_without_a_required_field_gets_its_default() {
        let f = flow(1);
        let mut v = serde_json::to_value(&f).expect("ser");
        let obj = v.as_object_mut().expect("object");
        obj.remove("http_version");
        obj.remove("is_https");
        let back = decode_flow(&serde_json::to_vec(&v).expect("ser")).expect("defaulted");
        assert_eq!(back.id, f.id);
        assert!(!back.is_https);
        // Not JSON at all is still an error.
        assert!(decode_flow(b"\x00not json").is_err());
    }

    #[test]
    fn an_unknown_record_version_is_skipped_and_counted() {
        let (_dir, path, flows) = one_segment(3);
        let mut data = fs::read(&path).expect("read");
        let at = record_starts(&data)[1];
        data[at + 4] = 9;
        let crc = record_crc(
            &data[at + 4..at + 12],
            &data[at + RECORD_HEADER..record_starts(&data)[2]],
        );
        data[at + 12..at + 16].copy_from_slice(&crc.to_le_bytes());
        let seg = decode_segment(&data);
        assert_eq!(seg.flows, [flows[0].clone(), flows[2].clone()]);
        assert_eq!(seg.skipped, 1);
        assert!(seg
            .corrupt
            .as_deref()
            .is_some_and(|c| c.contains("format 9")));
    }
}
