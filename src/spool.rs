//! The durable spool: a write-ahead log of accepted events.
//!
//! With the spool on, `write` acknowledges an event once it is on disk, so
//! broker's retention stays empty and a SIGKILL of cbd loses nothing that
//! was acknowledged. The sender reads the log back, in order, and records
//! how far Canopsis confirmed it.
//!
//! # On disk
//!
//! One directory per connector, locked by `spool.lock` (a second connector
//! or a stale Lua state pointing at the same directory is refused).
//! Segment files `<first seq, 20 digits>.seg` hold records:
//!
//! ```text
//! len u32 LE | crc32c u32 LE | seq u64 LE | kind u8 | payload (len - 1 bytes)
//! ```
//!
//! The CRC covers `seq`, `kind` and the payload. `checkpoint` holds the last
//! sequence number Canopsis confirmed (with its own CRC); a segment is
//! deleted as a whole once every record in it is confirmed. The format and
//! its checks are the `disk` module's.
//!
//! # Guarantees
//!
//! Records are appended in memory and reach the segment only through
//! [`Writer::commit`], which writes and `fdatasync`s; the connector
//! acknowledges right after. So the files hold what broker was told is safe
//! (and, after a crash, nothing it will replay on its own). On start, the tail of the last segment is checked
//! and cut at the first torn or corrupt record (those were never
//! acknowledged). The checkpoint is rewritten after each confirmed batch,
//! without fsync: a crash of cbd keeps it (it is in the page cache), a power
//! cut may roll it back, which only means events sent again. Duplicates are
//! possible, losses are not.

mod disk;

pub use disk::crc32c;

use disk::{
    create_segment, cut_torn_tail, list_segments, lock_dir, parse_at, read_checkpoint, read_record,
    resync, segment_path, sync_dir, walk, CHECKPOINT_MAGIC, FILE_MODE, HEADER, MAX_SEGMENT,
};

use crate::config::SpoolConfig;
use crate::logger::Logger;
use crate::sink::canopsis::pbehavior::{self, Action};
use crossbeam_channel::{Receiver, Sender as ChannelSender};
use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Seek, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the spool holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// One Canopsis event, as JSON, without the object it is about: what
    /// spools written before lanes hold (read back in one lane, in order).
    Event(Vec<u8>),
    /// One Canopsis event, as JSON, and the object it is about (host id,
    /// service id), which decides its lane when it is read back. On disk
    /// the two ids (u64 LE each) come before the JSON.
    Keyed((u64, u64), Vec<u8>),
    /// One pbehavior change.
    Downtime(Action),
}

impl Record {
    fn kind(&self) -> u8 {
        match self {
            Record::Event(_) => 1,
            Record::Downtime(_) => 2,
            Record::Keyed(..) => 3,
        }
    }

    fn decode(kind: u8, mut payload: Vec<u8>) -> Result<Record, String> {
        match kind {
            1 => Ok(Record::Event(payload)),
            3 if payload.len() >= 16 => {
                let id = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or_default());
                let key = (id(&payload[..8]), id(&payload[8..16]));
                payload.drain(..16);
                Ok(Record::Keyed(key, payload))
            }
            3 => Err("event record too short for its object".into()),
            2 => pbehavior::action_from_json(&payload)
                .map(Record::Downtime)
                .ok_or_else(|| {
                    format!(
                        "unreadable pbehavior change {}",
                        String::from_utf8_lossy(&payload)
                    )
                }),
            k => Err(format!("unknown record kind {k}")),
        }
    }
}

impl SpoolConfig {
    fn segment_bytes(&self) -> u64 {
        (self.max_bytes / 8).clamp(64 * 1024, MAX_SEGMENT)
    }
}

/// Why the spool cannot be used.
#[derive(Debug)]
pub enum SpoolError {
    /// Another connector (or a Lua state still closing) holds the directory.
    Locked(PathBuf),
    /// The file system said no.
    Io(PathBuf, io::Error),
}

impl std::fmt::Display for SpoolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpoolError::Locked(p) => write!(
                f,
                "spool directory {} is in use by another connector (each output needs its own spool_directory)",
                p.display()
            ),
            SpoolError::Io(p, e) => write!(f, "spool {}: {e}", p.display()),
        }
    }
}

impl std::error::Error for SpoolError {}

/// Why an append did not happen.
#[derive(Debug)]
pub enum AppendError {
    /// The spool is at its size cap.
    Full,
    /// Writing failed.
    Io(io::Error),
}

/// State both sides read.
#[derive(Debug)]
struct Shared {
    dir: PathBuf,
    /// Last sequence number whose record is in a segment file (readable).
    written: AtomicU64,
    /// Size of all segment files plus what waits in the writer's memory.
    bytes: AtomicU64,
    /// Last sequence number Canopsis confirmed.
    confirmed: AtomicU64,
    /// Broker is idle: send a partial batch now instead of waiting for it
    /// to fill (what `flush` does without the spool).
    hurry: AtomicBool,
    wake: ChannelSender<()>,
    _lock: File,
}

/// Figures for the stats line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SpoolStats {
    /// Bytes on disk (and about to be).
    pub bytes: u64,
    /// Events and pbehavior changes not confirmed yet.
    pub pending: u64,
}

/// The broker-thread side: appends and commits.
#[derive(Debug)]
pub struct Writer {
    shared: Arc<Shared>,
    file: File,
    segment_len: u64,
    segment_cap: u64,
    max_bytes: u64,
    buf: Vec<u8>,
    next_seq: u64,
    unsynced: u64,
    oldest_unsynced: Option<Instant>,
    /// Time spent in commits (writing out and syncing).
    sync_time: Duration,
}

/// The sender side: reads in order, confirms.
pub struct Reader {
    shared: Arc<Shared>,
    wake: Receiver<()>,
    segment: Option<Cursor>,
    /// Segments read past: (first seq of the segment after it, path).
    passed: VecDeque<(u64, PathBuf)>,
    /// Records read and not confirmed: (seq, size on disk).
    unconfirmed: VecDeque<(u64, u64)>,
    next: u64,
    checkpoint: File,
    log: Logger,
}

/// Where the reader is in a segment.
struct Cursor {
    first: u64,
    file: BufReader<File>,
    /// Offset of the next record.
    pos: u64,
    /// File length when last looked at (records up to `written` are in it).
    len: u64,
    /// `written` when `len` was taken.
    len_at: u64,
}

/// Opens (or creates) the spool at `cfg.dir`; what is left from a previous
/// run will be read first.
pub fn open(cfg: &SpoolConfig, log: &Logger) -> Result<(Writer, Reader), SpoolError> {
    let dir = cfg.dir.clone();
    let io_err = |p: &Path| {
        let p = p.to_path_buf();
        move |e| SpoolError::Io(p, e)
    };
    {
        use std::os::unix::fs::DirBuilderExt;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(&dir)
            .map_err(io_err(&dir))?;
    }
    let lock = lock_dir(&dir)?;

    let cp_path = dir.join("checkpoint");
    let checkpoint = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(&cp_path)
        .map_err(io_err(&cp_path))?;
    let confirmed = read_checkpoint(&checkpoint).unwrap_or_else(|| {
        if checkpoint.metadata().map_or(0, |m| m.len()) > 0 {
            log.warn(format_args!(
                "spool checkpoint {} is unreadable: every spooled event will be sent again",
                cp_path.display()
            ));
        }
        0
    });

    let mut segments = list_segments(&dir).map_err(io_err(&dir))?;
    // Segments Canopsis confirmed entirely (the next one starts at or
    // before the first unconfirmed record) are of no use: gone at once, so
    // a spool reopened with a smaller cap is not "full" of sent events.
    while segments.len() > 1 && segments[1].0 <= confirmed + 1 {
        let (_, path) = segments.remove(0);
        fs::remove_file(&path).map_err(io_err(&path))?;
    }
    // Only what is not confirmed counts toward the cap.
    let mut bytes = 0;
    let mut last_seq = confirmed;
    let count = segments.len();
    for (i, (first, path)) in segments.iter().enumerate() {
        let is_last = i + 1 == count;
        if !is_last && *first > confirmed {
            bytes += fs::metadata(path).map_err(io_err(path))?.len();
            continue;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(is_last)
            .open(path)
            .map_err(io_err(path))?;
        let mut unconfirmed = 0;
        let mut last = None;
        let end = walk(&file, path, log, |seq, size| {
            if seq > confirmed {
                unconfirmed += size;
            }
            last = Some(seq);
        })
        .map_err(io_err(path))?;
        bytes += unconfirmed;
        if is_last {
            cut_torn_tail(&file, path, end, log).map_err(io_err(path))?;
            last_seq = last.unwrap_or(first - 1).max(last_seq);
        }
    }
    let next_seq = last_seq + 1;
    let seg_path = segment_path(&dir, next_seq);
    let file = create_segment(&seg_path).map_err(io_err(&seg_path))?;
    sync_dir(&dir).map_err(io_err(&dir))?;

    let (wake_tx, wake_rx) = crossbeam_channel::bounded(1);
    let shared = Arc::new(Shared {
        dir,
        written: AtomicU64::new(last_seq),
        bytes: AtomicU64::new(bytes),
        confirmed: AtomicU64::new(confirmed),
        hurry: AtomicBool::new(false),
        wake: wake_tx,
        _lock: lock,
    });
    if last_seq > confirmed {
        log.info(format_args!(
            "spool {}: {} event(s) left by the previous run are sent first",
            cfg.dir.display(),
            last_seq - confirmed
        ));
    }
    let writer = Writer {
        shared: shared.clone(),
        file,
        segment_len: 0,
        segment_cap: cfg.segment_bytes(),
        max_bytes: cfg.max_bytes,
        buf: Vec::new(),
        next_seq,
        unsynced: 0,
        oldest_unsynced: None,
        sync_time: Duration::ZERO,
    };
    let reader = Reader {
        shared,
        wake: wake_rx,
        segment: None,
        passed: VecDeque::new(),
        unconfirmed: VecDeque::new(),
        next: confirmed + 1,
        checkpoint,
        log: log.clone(),
    };
    Ok((writer, reader))
}

impl Writer {
    /// Appends a record in memory and returns its sequence number; it is
    /// durable after the next [`commit`](Writer::commit).
    pub fn append(&mut self, record: &Record) -> Result<u64, AppendError> {
        let payload_len = match record {
            Record::Event(json) => json.len(),
            Record::Keyed(_, json) => 16 + json.len(),
            Record::Downtime(_) => 0,
        };
        let est = (HEADER + 1 + payload_len) as u64;
        let bytes = self.shared.bytes.load(Ordering::Acquire);
        // A record bigger than the whole cap still goes into an empty spool,
        // or it would wait forever.
        if bytes > 0 && bytes + est > self.max_bytes {
            return Err(AppendError::Full);
        }
        if self.segment_len > 0 && self.segment_len + est > self.segment_cap {
            self.rotate().map_err(AppendError::Io)?;
        }
        let seq = self.next_seq;
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0u8; HEADER]);
        self.buf.push(record.kind());
        match record {
            Record::Event(json) => self.buf.extend_from_slice(json),
            Record::Keyed((host, service), json) => {
                self.buf.extend_from_slice(&host.to_le_bytes());
                self.buf.extend_from_slice(&service.to_le_bytes());
                self.buf.extend_from_slice(json);
            }
            Record::Downtime(action) => self.buf.extend_from_slice(&pbehavior::action_json(action)),
        }
        let len = (self.buf.len() - start - HEADER) as u32;
        self.buf[start + 8..start + 16].copy_from_slice(&seq.to_le_bytes());
        let mut crc = crc32c(0, &self.buf[start + 8..start + 16]);
        crc = crc32c(crc, &self.buf[start + HEADER..]);
        self.buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
        self.buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
        let size = (self.buf.len() - start) as u64;
        self.segment_len += size;
        self.shared.bytes.fetch_add(size, Ordering::AcqRel);
        self.next_seq += 1;
        self.unsynced += 1;
        self.oldest_unsynced.get_or_insert_with(Instant::now);
        Ok(seq)
    }

    /// Records appended since the last commit.
    pub fn unsynced(&self) -> u64 {
        self.unsynced
    }

    /// Bytes appended since the last commit (held in memory).
    pub fn unsynced_bytes(&self) -> usize {
        self.buf.len()
    }

    /// When the oldest record not yet committed was appended.
    pub fn oldest_unsynced(&self) -> Option<Instant> {
        self.oldest_unsynced
    }

    /// Writes what waits in memory and `fdatasync`s: everything appended is
    /// durable when this returns `Ok`.
    pub fn commit(&mut self) -> io::Result<()> {
        if self.unsynced == 0 {
            return Ok(());
        }
        let start = Instant::now();
        let synced = self.write_out().and_then(|()| self.file.sync_data());
        self.sync_time += start.elapsed();
        synced?;
        self.unsynced = 0;
        self.oldest_unsynced = None;
        Ok(())
    }

    /// Time spent in commits so far.
    pub fn sync_time(&self) -> Duration {
        self.sync_time
    }

    /// Tells the reader not to wait for a partial batch to fill.
    pub fn hurry(&self) {
        self.shared.hurry.store(true, Ordering::Release);
        let _ = self.shared.wake.try_send(());
    }

    /// Sequence number of the last appended record.
    pub fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    /// Size and backlog.
    pub fn stats(&self) -> SpoolStats {
        SpoolStats {
            bytes: self.shared.bytes.load(Ordering::Acquire),
            pending: self
                .last_seq()
                .saturating_sub(self.shared.confirmed.load(Ordering::Acquire)),
        }
    }

    /// Hands what waits in memory to the file and tells the reader.
    fn write_out(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.file.write_all(&self.buf)?;
        self.buf.clear();
        self.shared
            .written
            .store(self.next_seq - 1, Ordering::Release);
        let _ = self.shared.wake.try_send(());
        Ok(())
    }

    /// Commits into the current segment and starts the next one.
    fn rotate(&mut self) -> io::Result<()> {
        self.commit()?;
        let path = segment_path(&self.shared.dir, self.next_seq);
        self.file = create_segment(&path)?;
        sync_dir(&self.shared.dir)?;
        self.segment_len = 0;
        Ok(())
    }
}

impl Reader {
    /// The next record not read yet, if one is in the files.
    pub fn next_record(&mut self) -> Option<(u64, Result<Record, String>)> {
        loop {
            let written = self.shared.written.load(Ordering::Acquire);
            if self.next > written {
                return None;
            }
            let Some(cur) = self.segment.as_mut() else {
                if !self.open_segment_at(self.next) {
                    return None;
                }
                continue;
            };
            if cur.len_at < written {
                // The writer committed more: the file is longer.
                match cur.file.get_ref().metadata() {
                    Ok(m) => cur.len = m.len(),
                    Err(e) => return self.read_error(&e),
                }
                cur.len_at = written;
            }
            let first = cur.first;
            match read_record(&mut cur.file, cur.len.saturating_sub(cur.pos)) {
                Ok(Some((seq, kind, payload))) => {
                    let size = (HEADER + 1 + payload.len()) as u64;
                    cur.pos += size;
                    if seq < self.next {
                        continue;
                    }
                    self.next = seq + 1;
                    self.unconfirmed.push_back((seq, size));
                    return Some((seq, Record::decode(kind, payload)));
                }
                Ok(None) => {
                    // This segment is done if a later one exists.
                    if !self.move_past(first) {
                        return None;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                    if !self.skip_damage(&e) && !self.move_past(first) {
                        return None;
                    }
                }
                Err(e) => return self.read_error(&e),
            }
        }
    }

    /// A read error that is not damage: nothing is skipped, reading is
    /// tried again later.
    fn read_error(&mut self, e: &io::Error) -> Option<(u64, Result<Record, String>)> {
        self.log.error(format_args!(
            "cannot read the spool after #{} ({e}); trying again",
            self.next - 1
        ));
        self.segment = None;
        None
    }

    /// Moves the cursor past a damaged record to the next valid one in the
    /// same segment; `false` if there is none.
    fn skip_damage(&mut self, e: &io::Error) -> bool {
        let Some(cur) = self.segment.as_mut() else {
            return false;
        };
        let path = segment_path(&self.shared.dir, cur.first);
        // The rest of the segment, read through the cursor's own file.
        let mut rest = vec![0u8; cur.len.saturating_sub(cur.pos) as usize];
        let read = cur.file.get_ref().read_exact_at(&mut rest, cur.pos);
        let skip = read.ok().and_then(|()| resync(&rest, self.next));
        let Some(skip) = skip else {
            self.log.error(format_args!(
                "spool segment {} is damaged after #{} ({e}); nothing readable follows in it",
                path.display(),
                self.next - 1
            ));
            return false;
        };
        let resumed = parse_at(&rest[skip..]).map_or(self.next, |(seq, ..)| seq);
        self.log.error(format_args!(
            "spool segment {} is damaged after #{} ({e}): record(s) #{}..#{} lost, reading goes on at #{resumed}",
            path.display(),
            self.next - 1,
            self.next,
            resumed.saturating_sub(1).max(self.next)
        ));
        cur.pos += skip as u64;
        if cur.file.seek(io::SeekFrom::Start(cur.pos)).is_err() {
            return false;
        }
        true
    }

    /// Reads again from the record after the checkpoint (after an internal
    /// error in the sender, what was read is not trusted).
    pub fn rewind(&mut self) {
        self.next = self.shared.confirmed.load(Ordering::Acquire) + 1;
        self.segment = None;
        self.passed.clear();
        self.unconfirmed.clear();
    }

    /// Whether the writer asked for what is read to go now (asking once).
    pub fn hurried(&self) -> bool {
        self.shared.hurry.swap(false, Ordering::AcqRel)
    }

    /// Waits at most `timeout` for the writer to add records.
    pub fn wait(&self, timeout: Duration) {
        let _ = self.wake.recv_timeout(timeout);
    }

    /// Canopsis confirmed everything up to `seq`: checkpoint, then drop the
    /// segments that hold nothing newer.
    pub fn confirm(&mut self, seq: u64) {
        self.shared.confirmed.fetch_max(seq, Ordering::AcqRel);
        let mut freed = 0;
        while let Some(&(s, size)) = self.unconfirmed.front() {
            if s > seq {
                break;
            }
            freed += size;
            self.unconfirmed.pop_front();
        }
        let _ = self
            .shared
            .bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
                Some(b.saturating_sub(freed))
            });
        let mut b = [0u8; 16];
        b[0..8].copy_from_slice(&seq.to_le_bytes());
        let crc = crc32c(0, &b[0..8]);
        b[8..12].copy_from_slice(&crc.to_le_bytes());
        b[12..16].copy_from_slice(&CHECKPOINT_MAGIC.to_le_bytes());
        if let Err(e) = self.checkpoint.write_all_at(&b, 0) {
            self.log.error(format_args!(
                "cannot write the spool checkpoint ({e}); confirmed events may be sent again after a restart"
            ));
            return;
        }
        while let Some((next_first, path)) = self.passed.front() {
            if *next_first > seq + 1 {
                break;
            }
            match fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    self.log.error(format_args!(
                        "cannot delete confirmed spool segment {} ({e})",
                        path.display()
                    ));
                    break;
                }
            }
            self.passed.pop_front();
        }
    }

    /// Opens the segment holding `seq` (or the first one after it).
    fn open_segment_at(&mut self, seq: u64) -> bool {
        let segs = match list_segments(&self.shared.dir) {
            Ok(s) => s,
            Err(e) => {
                self.log
                    .error(format_args!("cannot list the spool directory ({e})"));
                return false;
            }
        };
        let idx = segs
            .iter()
            .rposition(|(first, _)| *first <= seq)
            .unwrap_or(0);
        // Segments wholly before the start are confirmed leftovers.
        for (i, (_, path)) in segs[..idx].iter().enumerate() {
            self.passed.push_back((segs[i + 1].0, path.clone()));
        }
        let Some((first, path)) = segs.get(idx) else {
            return false;
        };
        self.open(*first, path.clone())
    }

    fn open(&mut self, first: u64, path: PathBuf) -> bool {
        match File::open(&path) {
            Ok(f) => {
                self.segment = Some(Cursor {
                    first,
                    file: BufReader::with_capacity(256 * 1024, f),
                    pos: 0,
                    len: 0,
                    len_at: 0,
                });
                true
            }
            Err(e) => {
                self.log.error(format_args!(
                    "cannot open spool segment {} ({e})",
                    path.display()
                ));
                false
            }
        }
    }

    /// Leaves segment `first` for the next one, if the writer started it.
    fn move_past(&mut self, first: u64) -> bool {
        let later = match list_segments(&self.shared.dir) {
            Ok(segs) => segs.into_iter().find(|(f, _)| *f > first),
            Err(_) => None,
        };
        let Some((next_first, next_path)) = later else {
            return false;
        };
        let path = segment_path(&self.shared.dir, first);
        self.passed.push_back((next_first, path));
        if next_first > self.next {
            self.log.error(format_args!(
                "spool records #{}..#{} are missing (damaged segment); continuing at #{next_first}",
                self.next,
                next_first - 1
            ));
            self.next = next_first;
        }
        self.segment = None;
        self.open(next_first, next_path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::canopsis::pbehavior::Create;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("cn-spool-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn cfg(d: &Path, max: u64) -> SpoolConfig {
        SpoolConfig {
            dir: d.to_path_buf(),
            max_bytes: max,
        }
    }

    fn log() -> Logger {
        Logger::memory(log::LevelFilter::Debug)
    }

    fn drain(r: &mut Reader) -> Vec<(u64, Record)> {
        std::iter::from_fn(|| r.next_record())
            .map(|(s, rec)| (s, rec.unwrap()))
            .collect()
    }

    fn ev(i: u64) -> Record {
        Record::Event(format!("{{\"n\":{i}}}").into_bytes())
    }

    /// A spool in `d` holding events 1..=n, committed, none confirmed, as a
    /// stopped run leaves it.
    fn left_behind(d: &Path, n: u64) {
        let (mut w, _r) = open(&cfg(d, 1 << 20), &log()).unwrap();
        for i in 1..=n {
            w.append(&ev(i)).unwrap();
        }
        w.commit().unwrap();
    }

    #[test]
    fn records_come_back_in_order_and_only_once_written() {
        let d = dir("order");
        let (mut w, mut r) = open(&cfg(&d, 1 << 20), &log()).unwrap();
        let dt = Record::Downtime(Action::Create(Create {
            name: "centreon-downtime-h-s-1-2".into(),
            author: "admin".into(),
            tstart: 1,
            tstop: 2,
            entity: "s/h".into(),
            comment: "é \"quoted\"".into(),
        }));
        assert_eq!(w.append(&ev(1)).unwrap(), 1);
        assert_eq!(w.append(&dt).unwrap(), 2);
        assert!(
            r.next_record().is_none(),
            "nothing readable before it is written"
        );
        w.commit().unwrap();
        assert_eq!(drain(&mut r), vec![(1, ev(1)), (2, dt)]);
        w.append(&ev(3)).unwrap();
        w.commit().unwrap();
        assert_eq!(drain(&mut r), vec![(3, ev(3))]);
    }

    #[test]
    fn a_restart_resumes_after_the_checkpoint() {
        let d = dir("restart");
        {
            let (mut w, mut r) = open(&cfg(&d, 1 << 20), &log()).unwrap();
            for i in 1..=10 {
                w.append(&ev(i)).unwrap();
            }
            w.commit().unwrap();
            assert_eq!(drain(&mut r).len(), 10);
            r.confirm(4);
        }
        let (mut w, mut r) = open(&cfg(&d, 1 << 20), &log()).unwrap();
        let seqs: Vec<u64> = drain(&mut r).into_iter().map(|(s, _)| s).collect();
        assert_eq!(seqs, (5..=10).collect::<Vec<_>>());
        assert_eq!(w.append(&ev(11)).unwrap(), 11, "numbering goes on");
        w.commit().unwrap();
        assert_eq!(drain(&mut r), vec![(11, ev(11))]);
    }

    #[test]
    fn a_torn_tail_is_cut_and_numbering_continues() {
        let d = dir("torn");
        left_behind(&d, 3);
        let seg = segment_path(&d, 1);
        let len = fs::metadata(&seg).unwrap().len();
        // Half a record, as a crash in the middle of a write leaves it.
        OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        let l = log();
        let (mut w, mut r) = open(&cfg(&d, 1 << 20), &l).unwrap();
        assert!(l.lines().iter().any(|x| x.contains("cut")));
        assert_eq!(w.append(&ev(3)).unwrap(), 3);
        w.commit().unwrap();
        let got: Vec<u64> = drain(&mut r).into_iter().map(|(s, _)| s).collect();
        assert_eq!(got, vec![1, 2, 3]);
    }

    #[test]
    fn a_corrupt_record_is_reported_and_later_segments_still_read() {
        let d = dir("corrupt");
        let c = cfg(&d, 8 * 64 * 1024);
        {
            let (mut w, _r) = open(&c, &log()).unwrap();
            let big = Record::Event(vec![b'x'; 40 * 1024]);
            for _ in 0..4 {
                w.append(&big).unwrap();
            }
            w.commit().unwrap();
        }
        let segs = list_segments(&d).unwrap();
        assert!(segs.len() >= 3, "{segs:?}");
        // Flip a byte in the payload of the first record.
        let f = OpenOptions::new().write(true).open(&segs[0].1).unwrap();
        f.write_all_at(b"y", 100).unwrap();
        let l = log();
        let (_w, mut r) = open(&c, &l).unwrap();
        let got: Vec<u64> = drain(&mut r).into_iter().map(|(s, _)| s).collect();
        assert_eq!(got, vec![2, 3, 4]);
        assert!(l.lines().iter().any(|x| x.contains("damaged")));
    }

    #[test]
    fn confirmed_segments_are_deleted_and_a_full_spool_refuses() {
        let d = dir("full");
        let c = cfg(&d, 8 * 64 * 1024);
        let (mut w, mut r) = open(&c, &log()).unwrap();
        let big = Record::Event(vec![b'x'; 60 * 1024]);
        let mut appended = 0;
        loop {
            match w.append(&big) {
                Ok(_) => appended += 1,
                Err(AppendError::Full) => break,
                Err(AppendError::Io(e)) => panic!("{e}"),
            }
        }
        assert_eq!(appended, 8);
        w.commit().unwrap();
        let before = list_segments(&d).unwrap().len();
        let all = drain(&mut r);
        r.confirm(all.last().unwrap().0);
        assert!(list_segments(&d).unwrap().len() < before);
        assert!(w.stats().bytes < 2 * 64 * 1024, "{:?}", w.stats());
        assert!(w.append(&big).is_ok(), "room again");
    }

    #[test]
    fn a_spool_reopened_with_a_smaller_cap_is_not_full_of_sent_events() {
        let d = dir("shrunk");
        let chunk = Record::Event(vec![b'x'; 256 * 1024]);
        {
            let (mut w, mut r) = open(&cfg(&d, 64 << 20), &log()).unwrap();
            for _ in 0..80 {
                w.append(&chunk).unwrap();
            }
            w.commit().unwrap();
            let all = drain(&mut r);
            assert_eq!(all.len(), 80);
            // Confirmed, but the last segments stay until the next confirm.
            r.confirm(80);
        }
        let on_disk: u64 = list_segments(&d)
            .unwrap()
            .iter()
            .map(|(_, p)| fs::metadata(p).unwrap().len())
            .sum();
        assert!(on_disk > 0);
        let (mut w, _r) = open(&cfg(&d, 16 << 20), &log()).unwrap();
        assert_eq!(w.stats().bytes, 0, "confirmed bytes do not count");
        assert!(list_segments(&d).unwrap().len() <= 2);
        for _ in 0..40 {
            w.append(&chunk).expect("room for 10 MiB in a 16 MiB spool");
        }
    }

    #[test]
    fn a_record_bigger_than_the_cap_goes_through_one_at_a_time() {
        let d = dir("huge");
        let big = Record::Event(vec![b'y'; 3 << 20]);
        let (mut w, mut r) = open(&cfg(&d, 1 << 20), &log()).unwrap();
        assert_eq!(w.append(&big).unwrap(), 1);
        assert!(matches!(w.append(&big), Err(AppendError::Full)));
        w.commit().unwrap();
        let got = drain(&mut r);
        assert_eq!(got, vec![(1, big.clone())]);
        r.confirm(1);
        assert_eq!(w.stats().bytes, 0);
        assert_eq!(w.append(&big).unwrap(), 2, "never full forever");
        w.commit().unwrap();
        assert_eq!(drain(&mut r), vec![(2, big)]);
    }

    #[test]
    fn a_damaged_record_in_the_middle_costs_only_that_record() {
        let d = dir("middle");
        left_behind(&d, 10);
        let seg = segment_path(&d, 1);
        let len = fs::metadata(&seg).unwrap().len();
        let rec = len / 10;
        let f = OpenOptions::new().write(true).open(&seg).unwrap();
        // Record 3's payload, then record 6's length (a huge claim).
        f.write_all_at(b"#", 2 * rec + HEADER as u64 + 2).unwrap();
        f.write_all_at(&0x3fff_ffffu32.to_le_bytes(), 5 * rec)
            .unwrap();
        let l = log();
        let (_w, mut r) = open(&cfg(&d, 1 << 20), &l).unwrap();
        assert_eq!(fs::metadata(&seg).unwrap().len(), len, "nothing cut");
        let got: Vec<u64> = drain(&mut r).into_iter().map(|(s, _)| s).collect();
        assert_eq!(got, vec![1, 2, 4, 5, 7, 8, 9, 10]);
        assert!(l.lines().iter().any(|x| x.contains("damaged")));
    }

    #[test]
    fn spool_files_are_for_owner_and_group_only() {
        use std::os::unix::fs::PermissionsExt;
        let d = dir("modes");
        let (mut w, _r) = open(&cfg(&d, 1 << 20), &log()).unwrap();
        w.append(&ev(1)).unwrap();
        w.commit().unwrap();
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o007, 0, "{}: {mode:o}", path.display());
        }
    }

    #[test]
    fn a_second_connector_cannot_share_the_directory() {
        let d = dir("lock");
        let held = open(&cfg(&d, 1 << 20), &log()).unwrap();
        match open(&cfg(&d, 1 << 20), &log()) {
            Err(SpoolError::Locked(_)) => {}
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("opened twice"),
        }
        drop(held);
        assert!(open(&cfg(&d, 1 << 20), &log()).is_ok(), "free once let go");
    }

    #[test]
    fn keyed_events_come_back_with_their_object_beside_older_records() {
        let d = dir("keyed");
        let (mut w, mut r) = open(&cfg(&d, 1 << 20), &log()).unwrap();
        let keyed = Record::Keyed((12, u64::MAX), b"{\"k\":1}".to_vec());
        w.append(&ev(1)).unwrap();
        w.append(&keyed).unwrap();
        w.commit().unwrap();
        assert_eq!(drain(&mut r), vec![(1, ev(1)), (2, keyed)]);
        let _ = fs::remove_dir_all(&d);
    }
}
