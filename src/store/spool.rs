//! The disk spool: where flows wait while the database is down or the queue is
//! full, so nothing is lost.
//!
//! `<home>/spool/` holds numbered segment files (`00000000000000000001.seg`).
//! A segment starts with [`MAGIC`] and holds records, each
//! `[u32 LE payload length][u32 LE CRC-32 of payload][payload]`, the payload
//! being the flow as JSON. Appends are fsync'd before they count as spooled.
//! Only the segment being written is open; the others are "sealed" and are
//! replayed oldest first, then deleted once their rows are committed. A record
//! that fails its checksum ends the segment's replay with a logged error (the
//! records before it are kept), and the next segment is replayed as usual.
//! The spool never grows past `spool_max_bytes`: rows beyond it are dropped
//! and counted.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::flow::Flow;

/// First bytes of every segment (format version 1).
pub const MAGIC: &[u8; 8] = b"CCPSPL1\n";
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
    /// Why reading stopped early, when it did.
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
    /// Open (creating) the spool directory; existing segments become replayable.
    pub fn open(dir: &Path, max_bytes: u64) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
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
        self.current
            .as_ref()
            .is_some_and(|c| c.2 > MAGIC.len() as u64)
            || list_segments(&self.dir).is_ok_and(|s| {
                s.iter()
                    .any(|(_, p)| self.current.as_ref().is_none_or(|c| c.0 != *p))
            })
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
            self.scratch.extend_from_slice(&[0; 8]);
            serde_json::to_writer(&mut self.scratch, flow).map_err(io::Error::other)?;
            let payload_len = self.scratch.len() - start - 8;
            let record = payload_len as u64 + 8;
            let header = if self.current.is_none() {
                MAGIC.len() as u64
            } else {
                0
            };
            if self.total_bytes + pending + record + header > self.max_bytes {
                self.scratch.truncate(start);
                res.dropped += 1;
                continue;
            }
            let crc = crc32fast::hash(&self.scratch[start + 8..]);
            self.scratch[start..start + 4].copy_from_slice(&(payload_len as u32).to_le_bytes());
            self.scratch[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
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

    /// The oldest sealed segment, read. Seals the open one when it is the only one.
    pub fn oldest(&mut self) -> io::Result<Option<Segment>> {
        let current = self.current.as_ref().map(|c| c.0.clone());
        let mut segments = list_segments(&self.dir)?;
        segments.retain(|(_, p)| Some(p) != current.as_ref());
        if segments.is_empty() {
            if current.is_none() {
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

    /// Move an unreadable segment aside (kept for inspection, no longer counted).
    pub fn quarantine(&mut self, seg: &Segment) -> io::Result<PathBuf> {
        let to = seg.path.with_extension("corrupt");
        fs::rename(&seg.path, &to)?;
        self.total_bytes = self.total_bytes.saturating_sub(seg.bytes);
        Ok(to)
    }
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

/// Read every intact record of a segment; stop at the first bad one.
pub fn read_segment(path: &Path) -> io::Result<Segment> {
    let mut data = Vec::new();
    File::open(path)?.read_to_end(&mut data)?;
    let bytes = data.len() as u64;
    let mut flows = Vec::new();
    let mut corrupt = None;
    if data.len() < MAGIC.len() || &data[..MAGIC.len()] != MAGIC {
        corrupt = Some("not a spool segment (bad header)".to_string());
    } else {
        let mut at = MAGIC.len();
        while at < data.len() {
            let Some(head) = data.get(at..at + 8) else {
                corrupt = Some(format!("truncated record header at byte {at}"));
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
                corrupt = Some(format!("truncated record at byte {at}"));
                break;
            };
            if crc32fast::hash(payload) != crc {
                corrupt = Some(format!("checksum mismatch at byte {at}"));
                break;
            }
            match serde_json::from_slice::<Flow>(payload) {
                Ok(f) => flows.push(f),
                Err(e) => {
                    corrupt = Some(format!("unreadable record at byte {at}: {e}"));
                    break;
                }
            }
            at = end;
        }
    }
    Ok(Segment {
        path: path.to_path_buf(),
        bytes,
        flows,
        corrupt,
    })
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
    fn corruption_keeps_the_prefix() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut s = Spool::open(dir.path(), 1 << 20).expect("open");
        let flows: Vec<Flow> = (0..3).map(flow).collect();
        for f in &flows {
            s.append(std::iter::once(f)).expect("append");
        }
        s.seal();
        let (_, path) = list_segments(dir.path()).expect("list").remove(0);
        let mut data = fs::read(&path).expect("read");
        let n = data.len();
        data[n - 10] ^= 0xff;
        fs::write(&path, data).expect("write");
        let seg = read_segment(&path).expect("read");
        assert_eq!(seg.flows, flows[..2]);
        assert!(seg
            .corrupt
            .as_deref()
            .is_some_and(|c| c.contains("checksum")));
    }
}
