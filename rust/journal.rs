//! The journal writer: one file, mapped shared, appended to inside the
//! registry's `put`/`pop` before the change. Compaction writes a snapshot
//! to a new file, syncs it, takes its lock and renames it over the old one.
//! No Python runs here.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use memmap2::{MmapMut, MmapOptions};

use crate::journal_format::{self as fmt, Counts, Kind};
use crate::sync::lock;

/// The mapping grows by whole chunks, preallocated on disk.
pub const CHUNK: usize = 1 << 20;

static FORKS: AtomicU64 = AtomicU64::new(0);
static AT_FORK: Once = Once::new();

extern "C" fn forked_child() {
    FORKS.fetch_add(1, Ordering::Relaxed);
}

fn watch_forks() {
    AT_FORK.call_once(|| {
        // SAFETY: registers a handler that only bumps an atomic.
        unsafe {
            libc::pthread_atfork(None, None, Some(forked_child));
        }
    });
}

fn clock(id: libc::clockid_t) -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer.
    unsafe {
        libc::clock_gettime(id, &mut ts);
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// (wall, boot) seconds now, or the fixed readings (tests compare bytes).
pub fn now(fixed: Option<(f64, f64)>) -> (f64, f64) {
    fixed.unwrap_or_else(|| (clock(libc::CLOCK_REALTIME), clock(libc::CLOCK_BOOTTIME)))
}

/// The 16 bytes of `/proc/sys/kernel/random/boot_id`, or zeros.
pub fn boot_id() -> [u8; 16] {
    let mut id = [0_u8; 16];
    let Ok(text) = std::fs::read_to_string("/proc/sys/kernel/random/boot_id") else {
        return id;
    };
    let hex: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
    if hex.len() != 32 {
        return id;
    }
    for (slot, pair) in id.iter_mut().zip(hex.chunks(2)) {
        let s = std::str::from_utf8(pair).unwrap_or("00");
        *slot = u8::from_str_radix(s, 16).unwrap_or(0);
    }
    id
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SyncMode {
    Process,
    Power,
    Group(Duration),
}

/// Why the journal could not write: raised as `JournalError`.
#[derive(Debug)]
pub struct JournalFault(pub String);

impl JournalFault {
    fn io(what: &str, path: &Path, err: &std::io::Error) -> Self {
        JournalFault(format!("journal {}: cannot {what}: {err}", path.display()))
    }
}

#[derive(Default, Clone, Debug)]
pub struct Stats {
    pub records: u64,
    pub compactions: u64,
    pub compaction_errors: u64,
    pub last_compaction_s: f64,
    pub syncs: u64,
    pub last_sync_s: f64,
    pub max_sync_s: f64,
    pub last_error: Option<String>,
}

/// The group-commit thread's view.
struct Group {
    file: Mutex<Arc<File>>,
    written: AtomicU64,
    stop: AtomicBool,
    stats: Mutex<Stats>,
}

/// A position to return to if the change after an append fails.
pub struct Mark {
    start: usize,
    seq: u64,
    last: Option<(u64, Counts)>,
}

pub struct Writer {
    file: Arc<File>,
    map: MmapMut,
    end: usize,
    seq: u64,
    path: PathBuf,
    mode: SyncMode,
    forks: u64,
    file_id: [u8; 16],
    boot_id: [u8; 16],
    fixed_times: Option<(f64, f64)>,
    config: Vec<u8>,
    /// Framed bytes of the live orders, for the compaction threshold.
    pub live: usize,
    /// Compaction is due past max(floor, 4x the live size): 1 MiB, tests lower it.
    floor: usize,
    threshold: usize,
    stats: Stats,
    group: Option<(Arc<Group>, JoinHandle<()>)>,
    /// The counters of the last frame appended, with its seq: a put or pop
    /// right after it carries only those that changed since.
    last: Option<(u64, Counts)>,
}

fn round_up(n: usize) -> usize {
    (n / CHUNK + 1) * CHUNK
}

/// Reserve bytes `from..to` of `file` on disk (the bytes before are already).
fn allocate(file: &File, from: usize, to: usize) -> std::io::Result<()> {
    let big = |_| std::io::Error::from_raw_os_error(libc::EFBIG);
    let off = libc::off_t::try_from(from).map_err(big)?;
    let len = libc::off_t::try_from(to.saturating_sub(from)).map_err(big)?;
    if len == 0 {
        return Ok(());
    }
    // SAFETY: a plain syscall on an open descriptor.
    let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), off, len) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::from_raw_os_error(rc))
    }
}

/// Take the process's write lock on `fd` (F_SETLK: no wait).
pub fn lock_fd(fd: RawFd) -> std::io::Result<()> {
    // SAFETY: `fl` is a valid flock record.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    // SAFETY: a plain syscall.
    let rc = unsafe { libc::fcntl(fd, libc::F_SETLK, &fl) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn sync_dir(path: &Path) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    File::open(dir)?.sync_all()
}

impl Writer {
    /// Take over the locked descriptor `fd` of `path` and replace the file by
    /// `snapshot` (built by [`Writer::snapshot`]).
    #[allow(clippy::too_many_arguments)]
    pub fn create(
        fd: RawFd,
        path: PathBuf,
        mode: SyncMode,
        file_id: [u8; 16],
        fixed_times: Option<(f64, f64)>,
        config: Vec<u8>,
        counts: &Counts,
        bodies: &[Vec<u8>],
        floor: usize,
    ) -> Result<Self, JournalFault> {
        watch_forks();
        // SAFETY: the caller hands over an open descriptor it no longer uses.
        let old = unsafe { File::from_raw_fd(fd) };
        let boot_id = boot_id();
        let mut w = Writer {
            file: Arc::new(old),
            map: MmapMut::map_anon(1).map_err(|e| JournalFault::io("map", &path, &e))?,
            end: 0,
            seq: 0,
            path,
            mode,
            forks: FORKS.load(Ordering::Relaxed),
            file_id,
            boot_id,
            fixed_times,
            config,
            live: 0,
            floor,
            threshold: floor,
            stats: Stats::default(),
            group: None,
            last: None,
        };
        w.rewrite(counts, bodies)?;
        w.stats.compactions = 0;
        if let SyncMode::Group(every) = mode {
            w.start_group(every);
        }
        Ok(w)
    }

    fn start_group(&mut self, every: Duration) {
        let group = Arc::new(Group {
            file: Mutex::new(self.file.clone()),
            written: AtomicU64::new(self.seq),
            stop: AtomicBool::new(false),
            stats: Mutex::new(Stats::default()),
        });
        let g = group.clone();
        let handle = std::thread::spawn(move || {
            let mut synced = g.written.load(Ordering::Acquire);
            while !g.stop.load(Ordering::Acquire) {
                std::thread::park_timeout(every);
                let written = g.written.load(Ordering::Acquire);
                if written == synced {
                    continue;
                }
                let file = lock(&g.file).clone();
                let t = Instant::now();
                let ok = file.sync_data();
                let dt = t.elapsed().as_secs_f64();
                let mut s = lock(&g.stats);
                match ok {
                    Ok(()) => {
                        synced = written;
                        s.syncs += 1;
                        s.last_sync_s = dt;
                        s.max_sync_s = s.max_sync_s.max(dt);
                    }
                    Err(e) => s.last_error = Some(e.to_string()),
                }
            }
        });
        self.group = Some((group, handle));
    }

    /// (wall, boot) seconds now.
    pub fn times(&self) -> (f64, f64) {
        now(self.fixed_times)
    }

    /// Tests: the clocks' next readings, taken by the registry.
    pub fn fix_times(&mut self, t: (f64, f64)) {
        self.fixed_times = Some(t);
    }

    pub fn check_fork(&self) -> Result<(), JournalFault> {
        if FORKS.load(Ordering::Relaxed) != self.forks {
            return Err(JournalFault(format!(
                "journal {}: this process was forked from the one that attached it; \
                 detach it and attach a journal of its own",
                self.path.display()
            )));
        }
        Ok(())
    }

    pub fn forked(&self) -> bool {
        FORKS.load(Ordering::Relaxed) != self.forks
    }

    /// Append one frame ahead of a change; `undo` takes it back.
    pub fn append(
        &mut self,
        kind: Kind,
        counts: &Counts,
        body: &[u8],
    ) -> Result<Mark, JournalFault> {
        self.check_fork()?;
        let mask = self.mask(kind, counts);
        let (prefix, n) = fmt::prefix_bytes(kind, self.seq + 1, mask, counts);
        let prefix = prefix.get(..n).unwrap_or(&[]);
        let crc = crc32c::crc32c_append(crc32c::crc32c(prefix), body);
        let head = fmt::frame_head(n + body.len(), crc);
        let start = self.write_at_end(&head, prefix, body)?;
        let mark = Mark {
            start,
            seq: self.seq,
            last: self.last,
        };
        self.seq += 1;
        self.last = Some((self.seq, *counts));
        self.stats.records += 1;
        if let Some((g, _)) = &self.group {
            g.written.store(self.seq, Ordering::Release);
        }
        Ok(mark)
    }

    /// The counters a frame of `kind` carries: a put or pop right after the
    /// writer's last frame, those that changed; anything else, all (so a
    /// config or snapshot frame, and the first frame after one, stand alone).
    fn mask(&self, kind: Kind, counts: &Counts) -> fmt::Mask {
        match (kind, &self.last) {
            (Kind::Put | Kind::Pop, Some((seq, prev))) if *seq == self.seq => {
                fmt::changed(prev, counts)
            }
            _ => fmt::ALL,
        }
    }

    /// Copy a frame (head, then prefix and body) into the map at `end`.
    fn write_at_end(
        &mut self,
        head: &[u8; fmt::FRAME_HEAD],
        prefix: &[u8],
        body: &[u8],
    ) -> Result<usize, JournalFault> {
        let start = self.end;
        let len = head.len() + prefix.len() + body.len();
        let stop = start + len;
        if stop > self.map.len() {
            self.grow(stop)?;
        }
        let Some(slot) = self.map.get_mut(start..stop) else {
            return Err(JournalFault("journal: mapping too small".to_owned()));
        };
        // The head (length, CRC) first, then the payload: a process killed
        // in between leaves a head whose CRC fails and zeros after the frame,
        // a torn tail, never a payload without its head.
        let Some((h, payload)) = slot.split_at_mut_checked(head.len()) else {
            return Err(JournalFault("journal: mapping too small".to_owned()));
        };
        h.copy_from_slice(head);
        std::sync::atomic::compiler_fence(Ordering::SeqCst);
        if let Some((p, b)) = payload.split_at_mut_checked(prefix.len()) {
            p.copy_from_slice(prefix);
            b.copy_from_slice(body);
        }
        if self.mode == SyncMode::Power {
            let t = Instant::now();
            if let Err(e) = self.map.flush_range(start, len) {
                if let Some(slot) = self.map.get_mut(start..stop) {
                    slot.fill(0);
                }
                return Err(JournalFault::io("sync", &self.path, &e));
            }
            self.note_sync(t.elapsed().as_secs_f64());
        }
        self.end = stop;
        Ok(start)
    }

    fn note_sync(&mut self, dt: f64) {
        self.stats.syncs += 1;
        self.stats.last_sync_s = dt;
        self.stats.max_sync_s = self.stats.max_sync_s.max(dt);
    }

    /// Take back the frame appended at `mark` (the change it announced failed).
    pub fn undo(&mut self, mark: Mark) {
        if let Some(slot) = self.map.get_mut(mark.start..self.end) {
            slot.fill(0);
        }
        self.end = mark.start;
        self.seq = mark.seq;
        self.last = mark.last;
        self.stats.records = self.stats.records.saturating_sub(1);
    }

    fn grow(&mut self, needed: usize) -> Result<(), JournalFault> {
        let cap = round_up(needed);
        allocate(&self.file, self.map.len(), cap)
            .map_err(|e| JournalFault::io("grow", &self.path, &e))?;
        // SAFETY: the file is ours (locked), and only this writer maps it for writing.
        let mut map = unsafe { MmapOptions::new().map_mut(&*self.file) }
            .map_err(|e| JournalFault::io("map", &self.path, &e))?;
        prefault(&mut map, self.end);
        self.map = map;
        Ok(())
    }

    pub fn snapshot(&self, counts: &Counts, bodies: &[Vec<u8>], seq: u64) -> Vec<u8> {
        let (wall, _) = self.times();
        let size: usize = bodies.iter().map(|b| fmt::frame_len(b.len())).sum();
        let mut out = Vec::with_capacity(fmt::HEADER_LEN + 512 + size);
        out.extend_from_slice(&fmt::header(&self.file_id, &self.boot_id, wall));
        fmt::frame(&mut out, Kind::Config, seq + 1, counts, &self.config);
        let n = bodies.len() as u64;
        fmt::frame(
            &mut out,
            Kind::Snapshot,
            seq + 2,
            counts,
            &fmt::snapshot_body(n),
        );
        for (i, body) in bodies.iter().enumerate() {
            fmt::frame(&mut out, Kind::Put, seq + 3 + i as u64, counts, body);
        }
        out
    }

    /// Replace the file by a snapshot of `bodies`: written to a new file,
    /// synced, locked, renamed over the old one, the directory synced.
    pub fn rewrite(&mut self, counts: &Counts, bodies: &[Vec<u8>]) -> Result<(), JournalFault> {
        self.check_fork()?;
        let t = Instant::now();
        let content = self.snapshot(counts, bodies, self.seq);
        let frames = 2 + bodies.len() as u64;
        let name = self
            .path
            .file_name()
            .map_or_else(|| "journal".into(), |n| n.to_string_lossy().into_owned());
        let tmp = self
            .path
            .with_file_name(format!(".{name}.{:016x}.new", rand_u64()));
        let result = (|| -> std::io::Result<(File, MmapMut)> {
            let mut f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o644)
                .open(&tmp)?;
            let cap = round_up(content.len());
            allocate(&f, 0, cap)?;
            f.write_all(&content)?;
            f.sync_data()?;
            lock_fd(f.as_raw_fd())?;
            // SAFETY: the new file is ours and locked.
            let mut map = unsafe { MmapOptions::new().map_mut(&f)? };
            prefault(&mut map, content.len());
            std::fs::rename(&tmp, &self.path)?;
            Ok((f, map))
        })();
        let (file, map) = match result {
            Ok(x) => x,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(JournalFault::io("write a snapshot", &self.path, &e));
            }
        };
        let dir = sync_dir(&self.path);
        self.file = Arc::new(file);
        if let Some((g, _)) = &self.group {
            *lock(&g.file) = self.file.clone();
        }
        self.map = map;
        self.end = content.len();
        self.seq += frames;
        self.stats.records = frames;
        self.live = bodies.iter().map(|b| fmt::frame_len(b.len())).sum();
        self.threshold = self.floor.max(4 * self.live);
        self.stats.compactions += 1;
        self.stats.last_compaction_s = t.elapsed().as_secs_f64();
        dir.map_err(|e| JournalFault::io("sync the directory", &self.path, &e))
    }

    /// Whether the log has grown past max(1 MiB, 4x the live size).
    pub fn wants_compaction(&self) -> bool {
        self.end > self.threshold
    }

    /// A compaction that failed: retry once the log has grown by half again.
    pub fn compaction_failed(&mut self, fault: JournalFault) {
        self.stats.compaction_errors += 1;
        self.stats.last_error = Some(fault.0);
        self.threshold = self.end + self.end / 2;
    }

    pub fn set_config(&mut self, config: Vec<u8>) {
        self.config = config;
    }

    pub fn bytes(&self) -> &[u8] {
        self.map.get(..self.end).unwrap_or(&[])
    }

    pub fn end(&self) -> usize {
        self.end
    }

    pub fn compact_at(&self) -> usize {
        self.threshold
    }

    pub fn capacity(&self) -> usize {
        self.map.len()
    }

    pub fn stats(&self) -> Stats {
        let mut s = self.stats.clone();
        if let Some((g, _)) = &self.group {
            let gs = lock(&g.stats);
            s.syncs += gs.syncs;
            s.last_sync_s = gs.last_sync_s;
            s.max_sync_s = s.max_sync_s.max(gs.max_sync_s);
            if gs.last_error.is_some() {
                s.last_error.clone_from(&gs.last_error);
            }
        }
        s
    }

    pub fn mode(&self) -> SyncMode {
        self.mode
    }

    /// Sync everything written (power and group modes; a no-op in process mode).
    pub fn flush(&mut self) -> Result<(), JournalFault> {
        if self.mode == SyncMode::Process || self.forked() {
            return Ok(());
        }
        let t = Instant::now();
        self.map
            .flush()
            .map_err(|e| JournalFault::io("sync", &self.path, &e))?;
        self.note_sync(t.elapsed().as_secs_f64());
        Ok(())
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if let Some((g, handle)) = self.group.take() {
            if self.forked() {
                // The thread stayed in the parent.
                std::mem::forget(handle);
            } else {
                g.stop.store(true, Ordering::Release);
                handle.thread().unpark();
                let _ = handle.join();
            }
        }
        let _ = self.flush();
    }
}

/// Take the write fault of every page from `from` on now, one call, rather
/// than one append in a dozen later: each byte is written back unchanged.
fn prefault(map: &mut MmapMut, from: usize) {
    const PAGE: usize = 4096;
    let mut off = from - from % PAGE;
    while let Some(byte) = map.get_mut(off) {
        let p: *mut u8 = byte;
        // SAFETY: `p` points into the mapping; only this writer writes it.
        unsafe { std::ptr::write_volatile(p, std::ptr::read_volatile(p)) };
        off += PAGE;
    }
}

fn rand_u64() -> u64 {
    let mut buf = [0_u8; 8];
    if let Ok(mut f) = File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut buf);
    }
    u64::from_le_bytes(buf) ^ (clock(libc::CLOCK_MONOTONIC).to_bits())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counters::KEYS;
    use std::os::fd::IntoRawFd;

    fn writer(name: &str) -> Writer {
        let dir = std::env::temp_dir().join(format!(
            "exec-router-journal-{name}-{}-{:x}",
            std::process::id(),
            rand_u64()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("j");
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        lock_fd(f.as_raw_fd()).unwrap();
        let counts = [0; KEYS.len()];
        Writer::create(
            f.into_raw_fd(),
            path,
            SyncMode::Process,
            [7; 16],
            Some((1.0, 2.0)),
            b"\x08\x00\x00\x00\x00".to_vec(),
            &counts,
            &[],
            CHUNK,
        )
        .map_err(|f| f.0)
        .unwrap()
    }

    /// The counter mask of the frame at `at`.
    fn mask_at(w: &Writer, at: usize) -> fmt::Mask {
        let b = w.bytes();
        u16::from_le_bytes([b[at + 17], b[at + 18]])
    }

    #[test]
    fn a_frame_after_an_undone_one_carries_what_that_one_did() {
        let mut w = writer("undo");
        let mut counts = [0; KEYS.len()];
        let first = w.end();
        w.append(Kind::Put, &counts, b"a").unwrap();
        assert_eq!(mask_at(&w, first), fmt::ALL); // the first after the snapshot
        let second = w.end();
        w.append(Kind::Put, &counts, b"b").unwrap();
        assert_eq!(mask_at(&w, second), 0);
        counts[13] = 1;
        let third = w.end();
        let mark = w.append(Kind::Pop, &counts, b"a").unwrap();
        assert_eq!(mask_at(&w, third), 1 << 13);
        w.undo(mark);
        assert_eq!(w.end(), third);
        assert!(w.bytes().len() == third);
        counts[14] = 1;
        w.append(Kind::Pop, &counts, b"a").unwrap();
        // Counter 13 was never written: the frame that follows the undo carries it.
        assert_eq!(mask_at(&w, third), 1 << 13 | 1 << 14);
        let fourth = w.end();
        w.append(Kind::Put, &counts, b"c").unwrap();
        assert_eq!(mask_at(&w, fourth), 0);
        let _ = std::fs::remove_dir_all(w.path.parent().unwrap());
    }
}
