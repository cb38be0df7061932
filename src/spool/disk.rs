//! The spool on disk: segment files and their names, records (length,
//! CRC-32C, sequence number, kind, payload) and how a torn tail is found
//! and cut, the checkpoint file, and the directory's lock.
//!
//! The format alone; what is appended, committed and read back, and when,
//! is [`super::Writer`]'s and [`super::Reader`]'s.

use super::SpoolError;
use crate::logger::Logger;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Bytes before a record's kind and payload.
pub(super) const HEADER: usize = 16;

/// Largest segment file; smaller spools get segments of an eighth of their size.
pub(super) const MAX_SEGMENT: u64 = 32 * 1024 * 1024;

/// Spool files hold the events: readable by cbd's user and group only.
pub(super) const FILE_MODE: u32 = 0o640;

pub(super) const CHECKPOINT_MAGIC: u32 = 0x434e_5350; // "CNSP"

/// Takes the directory's lock, without waiting: a Lua state being closed
/// lets go of it before its `__gc` returns, and the connector tries again
/// every second anyway.
pub(super) fn lock_dir(dir: &Path) -> Result<File, SpoolError> {
    let path = dir.join("spool.lock");
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(&path)
        .map_err(|e| SpoolError::Io(path.clone(), e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(SpoolError::Locked(dir.into())),
        Err(fs::TryLockError::Error(e)) => Err(SpoolError::Io(path, e)),
    }
}

pub(super) fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}.seg"))
}

pub(super) fn create_segment(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(FILE_MODE)
        .open(path)
}

/// Segment files, oldest first.
pub(super) fn list_segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut segs = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let first = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".seg"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(first) = first.filter(|f| *f > 0) {
            segs.push((first, path));
        }
    }
    segs.sort();
    Ok(segs)
}

pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A record at the start of `buf`, if it is a whole valid one:
/// `(seq, kind, payload range, size)`. Its length is checked against what
/// `buf` holds before anything else.
pub(super) fn parse_at(buf: &[u8]) -> Option<(u64, u8, std::ops::Range<usize>, usize)> {
    let header = buf.get(..HEADER)?;
    let len = u32::from_le_bytes(header[0..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(header[4..8].try_into().ok()?);
    let seq = u64::from_le_bytes(header[8..16].try_into().ok()?);
    if len == 0 || len > buf.len() - HEADER {
        return None;
    }
    let body = &buf[HEADER..HEADER + len];
    (crc32c(crc32c(0, &header[8..16]), body) == crc)
        .then(|| (seq, body[0], HEADER + 1..HEADER + len, HEADER + len))
}

/// The offset of the first valid record in `buf` whose sequence number is
/// at least `min_seq`: where reading resumes after damage.
pub(super) fn resync(buf: &[u8], min_seq: u64) -> Option<usize> {
    (1..=buf.len().saturating_sub(HEADER)).find(|&i| {
        let seq = u64::from_le_bytes(buf[i + 8..i + 16].try_into().expect("8 bytes"));
        seq >= min_seq && parse_at(&buf[i..]).is_some()
    })
}

/// Walks a segment's records, handing each valid one's sequence number and
/// size to `each`; a damaged stretch in the middle is logged and skipped
/// (the next record is found by its header, CRC and sequence number).
/// Returns where the last valid record ends: what follows is a torn tail.
/// A read error (not damage) is returned as such.
pub(super) fn walk(
    file: &File,
    path: &Path,
    log: &Logger,
    mut each: impl FnMut(u64, u64),
) -> io::Result<u64> {
    let mut buf = Vec::new();
    (&*file).read_to_end(&mut buf)?;
    let (mut pos, mut end, mut expected) = (0, 0, 0u64);
    while pos < buf.len() {
        match parse_at(&buf[pos..]) {
            Some((seq, _, _, size)) => {
                each(seq, size as u64);
                pos += size;
                end = pos;
                expected = seq + 1;
            }
            None => match resync(&buf[pos..], expected) {
                Some(skip) => {
                    log.error(format_args!(
                        "spool segment {}: {skip} damaged byte(s) at offset {pos} skipped; the records after them are kept",
                        path.display()
                    ));
                    pos += skip;
                }
                None => break,
            },
        }
    }
    Ok(end as u64)
}

/// Cuts what follows the last valid record of the segment being written:
/// a record a crash tore (never acknowledged: commits sync before acks).
pub(super) fn cut_torn_tail(file: &File, path: &Path, end: u64, log: &Logger) -> io::Result<()> {
    let total = file.metadata()?.len();
    if end < total {
        log.warn(format_args!(
            "spool segment {}: {} byte(s) after the last complete record cut (written but never acknowledged)",
            path.display(),
            total - end
        ));
        file.set_len(end)?;
        file.sync_all()?;
    }
    Ok(())
}

/// Reads one record, `remaining` bytes being left in the file: `Ok(None)`
/// at a clean end, `Err` of kind `InvalidData` on a torn or corrupt one
/// (a length beyond the file is refused before any buffer is allocated),
/// other kinds on read errors.
pub(super) fn read_record(
    r: &mut impl Read,
    remaining: u64,
) -> io::Result<Option<(u64, u8, Vec<u8>)>> {
    let damaged = |what| io::Error::new(io::ErrorKind::InvalidData, what);
    let mut header = [0u8; HEADER];
    let mut got = 0;
    while got < HEADER {
        match r.read(&mut header[got..])? {
            0 if got == 0 => return Ok(None),
            0 => return Err(damaged("torn header")),
            n => got += n,
        }
    }
    let len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
    let seq = u64::from_le_bytes(header[8..16].try_into().expect("8 bytes"));
    if len == 0 || len as u64 > remaining.saturating_sub(HEADER as u64) {
        return Err(damaged("bad length"));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => damaged("torn record"),
        _ => e,
    })?;
    let mut sum = crc32c(0, &header[8..16]);
    sum = crc32c(sum, &body);
    if sum != crc {
        return Err(damaged("checksum mismatch"));
    }
    let kind = body.remove(0);
    Ok(Some((seq, kind, body)))
}

pub(super) fn read_checkpoint(f: &File) -> Option<u64> {
    let mut b = [0u8; 16];
    f.read_exact_at(&mut b, 0).ok()?;
    let seq = u64::from_le_bytes(b[0..8].try_into().ok()?);
    let crc = u32::from_le_bytes(b[8..12].try_into().ok()?);
    let magic = u32::from_le_bytes(b[12..16].try_into().ok()?);
    (magic == CHECKPOINT_MAGIC && crc == crc32c(0, &b[0..8])).then_some(seq)
}

/// CRC-32C (Castagnoli), the checksum disk formats use for torn-write
/// detection: the CPU's instruction where there is one (SSE 4.2, every
/// EL8-era x86 server), else a table. No dependency.
pub fn crc32c(crc: u32, data: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("sse4.2") {
        // SAFETY: the CPU has SSE 4.2.
        return unsafe { crc32c_sse42(crc, data) };
    }
    crc32c_table(crc, data)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
unsafe fn crc32c_sse42(crc: u32, data: &[u8]) -> u32 {
    use std::arch::x86_64::{_mm_crc32_u64, _mm_crc32_u8};
    let mut c = u64::from(!crc);
    let mut words = data.chunks_exact(8);
    for w in &mut words {
        c = _mm_crc32_u64(c, u64::from_le_bytes(w.try_into().expect("8 bytes")));
    }
    let mut c = c as u32;
    for &b in words.remainder() {
        c = _mm_crc32_u8(c, b);
    }
    !c
}

pub(super) fn crc32c_table(crc: u32, data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut t = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0x82f6_3b78 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            t[i] = c;
            i += 1;
        }
        t
    };
    let mut c = !crc;
    for &b in data {
        c = TABLE[((c ^ b as u32) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        assert_eq!(crc32c(0, b"123456789"), 0xe306_9283);
        assert_eq!(crc32c(crc32c(0, b"1234"), b"56789"), 0xe306_9283);
        assert_eq!(crc32c_table(0, b"123456789"), 0xe306_9283);
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + i / 3) as u8).collect();
        for len in [0, 1, 7, 8, 9, 63, 64, 999, 1000] {
            assert_eq!(
                crc32c(5, &data[..len]),
                crc32c_table(5, &data[..len]),
                "{len}"
            );
        }
    }
}
