//! Applying a change set of any size as one step: the writes are kept compactly (spilled to an
//! unlinked temporary file beyond [`SPILL_BYTES`]) until commit, then written in bounded chunks
//! under an undo journal.
//!
//! Why not one `sled::Batch`: sled 0.34 pins its epoch for a whole batch, so nothing it replaces
//! is freed until the batch ends; a 500,000-entry batch peaked at 4.5 GB and ran at ~40-60k
//! entries/s, against ~200-270k/s for plain inserts in the same tree (BENCHMARKS.md, "Import").
//!
//! Protocol of a journaled commit (every step a sled write, so sled's prefix recovery orders them):
//! 1. `meta/journal` := marker (the change set's source);
//! 2. per chunk of at most [`CHUNK_OPS`] writes (and ~[`CHUNK_UNDO_BYTES`] of undo data): first one
//!    journal record holding, for every key the chunk writes, the value it has now (or that it is
//!    absent), then the chunk's writes as plain inserts/removes;
//! 3. remove `meta/journal`: the commit point;
//! 4. clear the journal tree (garbage from here on).
//!
//! sled recovers a prefix of its log after a crash, so a recovered data write implies its undo
//! record and the marker. [`Store::open`](super::Store::open) therefore rolls back whenever the
//! marker is there: the journal records, newest first, restore every key they name; then the
//! marker goes, then the records. Restoring is idempotent, so a crash during the roll-back is
//! rolled back again at the next open. The journal is generic over keys: whatever a change set
//! writes (entries, mutation records, archive, outbox, anything added later) is covered.

use super::StoreError;
use std::io::{Read, Seek, Write};
use std::path::PathBuf;

/// Writes per chunk: what a chunk holds in memory (its keys and their old values are read before
/// its first write). Also the size up to which a change set is one sled batch: batches of ~1,000
/// still insert at about the plain rate, batches of 10,000 at a third of it.
pub(crate) const CHUNK_OPS: usize = 1024;
/// Undo bytes per journal record (old values of changed entries make it grow). sled writes a
/// node over 128 KiB as a blob file at every change, and a leaf holds up to 16 records.
const CHUNK_UNDO_BYTES: usize = 6 * 1024;
/// Pending writes held in memory before they go to the spill file.
const SPILL_BYTES: usize = 4 * 1024 * 1024;
/// Change sets up to this many writes skip the journal: one sled batch is atomic by itself.
pub(crate) const SMALL_OPS: u64 = CHUNK_OPS as u64;

pub(crate) const KEY_JOURNAL: &[u8] = b"journal";

/// The writes of a change set, in order, encoded as `klen u32 | key | tag u8 | [vlen u32 | value]`
/// (tag 1 insert, 0 remove). Blocks of them move to an unlinked temporary file once the buffer
/// reaches [`SPILL_BYTES`], so a change set's memory does not grow with its size.
pub(crate) struct Pending {
    buf: Vec<u8>,
    ops: u64,
    spill: Option<std::fs::File>,
    spill_dir: Option<PathBuf>,
    spill_at: usize,
}

impl Pending {
    pub(crate) fn new(spill_dir: Option<PathBuf>) -> Pending {
        Pending {
            buf: Vec::new(),
            ops: 0,
            spill: None,
            spill_dir,
            spill_at: SPILL_BYTES,
        }
    }

    #[cfg(test)]
    pub(crate) fn spilling_at(mut self, bytes: usize) -> Pending {
        self.spill_at = bytes;
        self
    }

    pub(crate) fn ops(&self) -> u64 {
        self.ops
    }

    pub(crate) fn insert(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.push(key, Some(value))
    }

    pub(crate) fn remove(&mut self, key: &[u8]) -> Result<(), StoreError> {
        self.push(key, None)
    }

    fn push(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), StoreError> {
        put_bytes(&mut self.buf, key);
        match value {
            Some(v) => {
                self.buf.push(1);
                put_bytes(&mut self.buf, v);
            }
            None => self.buf.push(0),
        }
        self.ops += 1;
        if self.buf.len() >= self.spill_at {
            self.spill_block()?;
        }
        Ok(())
    }

    fn spill_block(&mut self) -> Result<(), StoreError> {
        let file = match &mut self.spill {
            Some(f) => f,
            None => {
                let f = match &self.spill_dir {
                    Some(d) => tempfile::tempfile_in(d),
                    None => tempfile::tempfile(),
                }
                .map_err(|e| StoreError::Io(format!("change set spill file: {e}")))?;
                self.spill.insert(f)
            }
        };
        let len = u64::try_from(self.buf.len()).unwrap_or(u64::MAX);
        file.write_all(&len.to_le_bytes())
            .and_then(|()| file.write_all(&self.buf))
            .map_err(|e| StoreError::Io(format!("change set spill file: {e}")))?;
        self.buf.clear();
        Ok(())
    }

    /// Whether everything is still in memory.
    pub(crate) fn in_memory(&self) -> bool {
        self.spill.is_none()
    }

    /// Calls `f` with each block of encoded writes, in order.
    pub(crate) fn for_each_block(
        mut self,
        mut f: impl FnMut(&[u8]) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let spill_err = |e: std::io::Error| StoreError::Io(format!("change set spill file: {e}"));
        if let Some(mut file) = self.spill.take() {
            file.rewind().map_err(spill_err)?;
            let mut block = Vec::new();
            loop {
                let mut len = [0u8; 8];
                match file.read_exact(&mut len) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                    Err(e) => return Err(spill_err(e)),
                }
                let len = usize::try_from(u64::from_le_bytes(len))
                    .map_err(|_| StoreError::Io("change set spill file: block too large".into()))?;
                block.resize(len, 0);
                file.read_exact(&mut block).map_err(spill_err)?;
                f(&block)?;
            }
        }
        f(&self.buf)
    }
}

fn put_bytes(buf: &mut Vec<u8>, b: &[u8]) {
    buf.extend_from_slice(&u32::try_from(b.len()).unwrap_or(u32::MAX).to_le_bytes());
    buf.extend_from_slice(b);
}

/// Reads the writes of one encoded block.
pub(crate) struct Ops<'a> {
    rest: &'a [u8],
}

impl<'a> Ops<'a> {
    pub(crate) fn new(block: &'a [u8]) -> Ops<'a> {
        Ops { rest: block }
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let (len, rest) = self.rest.split_first_chunk::<4>()?;
        let len = usize::try_from(u32::from_le_bytes(*len)).ok()?;
        let (b, rest) = (rest.get(..len)?, rest.get(len..)?);
        self.rest = rest;
        Some(b)
    }
}

impl<'a> Iterator for Ops<'a> {
    /// `Err` when the block is malformed (it never leaves this process, so that is a bug).
    type Item = Result<(&'a [u8], Option<&'a [u8]>), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let bad = || StoreError::Io("change set: malformed pending write".into());
        let Some(key) = self.bytes() else {
            self.rest = &[];
            return Some(Err(bad()));
        };
        let Some((&tag, rest)) = self.rest.split_first() else {
            self.rest = &[];
            return Some(Err(bad()));
        };
        self.rest = rest;
        if tag == 0 {
            return Some(Ok((key, None)));
        }
        match self.bytes() {
            Some(v) => Some(Ok((key, Some(v)))),
            None => {
                self.rest = &[];
                Some(Err(bad()))
            }
        }
    }
}

/// Undo record: per key `klen u32 | key | tag u8 | [vlen u32 | old value]` (tag 0: the key was
/// absent), the encoding of pending writes, so [`Ops`] reads both.
pub(crate) struct Undo {
    buf: Vec<u8>,
}

impl Undo {
    pub(crate) fn new() -> Undo {
        Undo { buf: Vec::new() }
    }
    pub(crate) fn push(&mut self, key: &[u8], old: Option<&[u8]>) {
        put_bytes(&mut self.buf, key);
        match old {
            Some(v) => {
                self.buf.push(1);
                put_bytes(&mut self.buf, v);
            }
            None => self.buf.push(0),
        }
    }
    pub(crate) fn full(&self) -> bool {
        self.buf.len() >= CHUNK_UNDO_BYTES
    }
    pub(crate) fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }
}

/// A test hook: with `DKD_TEST_PAUSE_AT=<phase>` the process makes what it wrote so far durable,
/// prints `dkd-test-pause <phase>` on stderr and waits to be killed. The crash tests use it to
/// SIGKILL an import in a given phase instead of guessing with timers. Without the variable it
/// costs one comparison.
pub(crate) fn pause_point(phase: std::fmt::Arguments<'_>, flush: impl FnOnce()) {
    static AT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let Some(at) = AT.get_or_init(|| std::env::var("DKD_TEST_PAUSE_AT").ok()) else {
        return;
    };
    let phase = phase.to_string();
    if *at == phase {
        flush();
        eprintln!("dkd-test-pause {phase}");
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_writes_come_back_in_order_across_spilled_blocks() {
        let mut p = Pending::new(None).spilling_at(1000);
        for i in 0..5000u32 {
            let k = i.to_be_bytes();
            if i % 7 == 0 {
                p.remove(&k).expect("remove");
            } else {
                p.insert(&k, &vec![b'v'; (i % 50) as usize])
                    .expect("insert");
            }
        }
        assert!(!p.in_memory(), "the test must exercise the spill file");
        assert_eq!(p.ops(), 5000);
        let mut seen = 0u32;
        p.for_each_block(|block| {
            for op in Ops::new(block) {
                let (k, v) = op?;
                assert_eq!(k, seen.to_be_bytes());
                if seen % 7 == 0 {
                    assert_eq!(v, None);
                } else {
                    assert_eq!(v, Some(vec![b'v'; (seen % 50) as usize].as_slice()));
                }
                seen += 1;
            }
            Ok(())
        })
        .expect("read back");
        assert_eq!(seen, 5000);
    }

    #[test]
    fn a_truncated_block_is_an_error_not_a_panic() {
        let mut p = Pending::new(None);
        p.insert(b"key", b"value").expect("insert");
        let block = p.buf.clone();
        for cut in 0..block.len() {
            let r: Result<Vec<_>, _> = Ops::new(&block[..cut]).collect();
            assert!(cut == 0 || r.is_err(), "cut at {cut}");
        }
    }
}
