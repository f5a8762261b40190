//! The journal writer: one file, mapped shared, appended to inside the
//! registry's `put`/`pop` before the change. Compaction (journal_compact.rs)
//! writes a snapshot to a new file in a thread; the writer renames it over
//! the old one later. No Python runs here.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use memmap2::{MmapMut, MmapOptions};

use crate::journal_format::{self as fmt, Counts, Kind};
use crate::sync::lock;

#[path = "journal_compact.rs"]
mod compact;

/// Tests only: an errno the journal's system calls fail with, by call
/// (a read-only file system cannot be simulated while a file is mapped).
pub mod faults {
    use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};

    /// `fallocate`: growing the file, a compaction reserving its new one.
    pub const GROW: u32 = 1;
    /// Opening a compaction's new file.
    pub const OPEN: u32 = 2;
    /// `msync`, `fsync`, `fdatasync`: of the map, a new file, the directory.
    pub const SYNC: u32 = 4;

    static POINTS: AtomicU32 = AtomicU32::new(0);
    static ERRNO: AtomicI32 = AtomicI32::new(0);

    /// Fail the calls `points` selects with `errno` (0 or no points: none).
    pub fn set(points: u32, errno: i32) {
        ERRNO.store(errno, Ordering::Relaxed);
        POINTS.store(if errno == 0 { 0 } else { points }, Ordering::Release);
    }

    /// The injected error of `point`, if any.
    pub fn check(point: u32) -> std::io::Result<()> {
        if POINTS.load(Ordering::Acquire) & point == 0 {
            return Ok(());
        }
        Err(std::io::Error::from_raw_os_error(
            ERRNO.load(Ordering::Relaxed),
        ))
    }
}

/// How long the wall-clock offset of `record_times` is used, in seconds.
const OFFSET_FOR: f64 = 0.05;

/// `last_seq` before any frame (frames count from 1).
const NO_SEQ: u64 = u64::MAX;

/// Run `f` on the index of each bit set in `mask`.
fn for_bits(mask: fmt::Mask, mut f: impl FnMut(usize)) {
    let mut bits = mask;
    while bits != 0 {
        f(bits.trailing_zeros() as usize);
        bits &= bits - 1;
    }
}

/// The mapping grows by whole chunks, preallocated on disk.
pub const CHUNK: usize = 1 << 20;
/// The writer maps this much address space (or twice the file) once, so
/// that growing the file only allocates: no remap, no page-table rebuild.
const RESERVE: usize = 1 << 30;
const PAGE: usize = 4096;

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
    /// The part of the last compaction on the calling thread: the switch.
    pub last_switch_s: f64,
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
    /// Wall clock minus boot clock, read at boot-clock time `offset_at`.
    wall_offset: f64,
    offset_at: f64,
    config: Vec<u8>,
    /// Framed bytes of the live orders, for the compaction threshold.
    pub live: usize,
    /// Compaction is due past max(floor, 4x the live size): 1 MiB, tests lower it.
    floor: usize,
    threshold: usize,
    stats: Stats,
    group: Option<(Arc<Group>, JoinHandle<()>)>,
    /// A compaction running in a thread, and threads finishing switched ones.
    pending: Option<Box<compact::Pending>>,
    finishing: Vec<JoinHandle<()>>,
    background: Arc<Mutex<compact::Background>>,
    knobs: compact::Knobs,
    /// Bytes of the file allocated (and safe to store to) from the map's start.
    cap: usize,
    /// Where `map` starts: a map replaced elsewhere (a compaction) is noticed.
    mapped_at: usize,
    /// The counters of the last frame appended, and its seq (`NO_SEQ`
    /// before the first): a put or pop right after it carries only those
    /// that changed since.
    last: Counts,
    last_seq: u64,
    /// What the latest append changed in `last`, for `undo`: the former
    /// seq, and the former values of the counters it carried.
    undo_seq: u64,
    undo_mask: fmt::Mask,
    undo_values: Counts,
}

fn round_up(n: usize) -> usize {
    (n / CHUNK + 1) * CHUNK
}

/// Reserve bytes `from..to` of `file` on disk (the bytes before are already).
fn allocate(file: &File, from: usize, to: usize) -> std::io::Result<()> {
    faults::check(faults::GROW)?;
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
    faults::check(faults::SYNC)?;
    File::open(dir)?.sync_all()
}

impl Writer {
    /// Take over the locked descriptor `fd` of `path` and replace the file by
    /// a snapshot of `bodies`.
    #[allow(clippy::too_many_arguments)]
    pub fn create(
        fd: RawFd,
        path: PathBuf,
        mode: SyncMode,
        file_id: [u8; 16],
        fixed_times: Option<(f64, f64)>,
        config: Vec<u8>,
        counts: &Counts,
        bodies: Vec<Arc<[u8]>>,
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
            wall_offset: 0.0,
            offset_at: f64::NEG_INFINITY,
            config,
            live: 0,
            floor,
            threshold: floor,
            stats: Stats::default(),
            group: None,
            pending: None,
            finishing: Vec::new(),
            background: Arc::default(),
            knobs: compact::Knobs::default(),
            cap: 0,
            mapped_at: 0,
            last: [0; fmt::COUNTERS],
            last_seq: NO_SEQ,
            undo_seq: NO_SEQ,
            undo_mask: 0,
            undo_values: [0; fmt::COUNTERS],
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
                let ok = faults::check(faults::SYNC).and_then(|()| file.sync_data());
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

    /// (wall, boot) for a record: the boot clock read now, the wall clock
    /// as the boot clock plus their offset, read again every `OFFSET_FOR`
    /// (one clock read per change, not two; a wall-clock step shows within
    /// 50 ms, and only a restore after a reboot reads the wall clock).
    pub fn record_times(&mut self) -> (f64, f64) {
        if let Some(t) = self.fixed_times {
            return t;
        }
        let boot = clock(libc::CLOCK_BOOTTIME);
        let since = boot - self.offset_at;
        if (0.0..OFFSET_FOR).contains(&since) {
            return (boot + self.wall_offset, boot);
        }
        let wall = clock(libc::CLOCK_REALTIME);
        self.wall_offset = wall - boot;
        self.offset_at = boot;
        (wall, boot)
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
        fmt::with_scratch(|buf, _| {
            buf.extend_from_slice(body);
            self.append_sealed(kind, counts, buf)
        })
    }

    /// [`Writer::append`] of the body in `buf` from [`fmt::ROOM`] on: the
    /// head and prefix are written in front of it, and the frame copied once.
    pub fn append_sealed(
        &mut self,
        kind: Kind,
        counts: &Counts,
        buf: &mut [u8],
    ) -> Result<Mark, JournalFault> {
        self.check_fork()?;
        let mask = self.mask(kind, counts);
        let start = fmt::seal(buf, kind, self.seq + 1, mask, counts)
            .ok_or_else(|| JournalFault("journal: a body buffer without room".to_owned()))?;
        let frame = buf.get(start..).unwrap_or(&[]);
        let at = self.write_at_end(frame)?;
        let mark = Mark {
            start: at,
            seq: self.seq,
        };
        self.undo_seq = std::mem::replace(&mut self.last_seq, self.seq + 1);
        self.undo_mask = mask;
        for_bits(mask, |i| {
            if let (Some(old), Some(last), Some(new)) = (
                self.undo_values.get_mut(i),
                self.last.get_mut(i),
                counts.get(i),
            ) {
                *old = std::mem::replace(last, *new);
            }
        });
        self.seq += 1;
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
        match kind {
            Kind::Put | Kind::Pop if self.last_seq == self.seq => fmt::changed(&self.last, counts),
            _ => fmt::ALL,
        }
    }

    /// Copy a frame into the map at `end`: its head, then its payload.
    fn write_at_end(&mut self, frame: &[u8]) -> Result<usize, JournalFault> {
        let start = self.end;
        let len = frame.len();
        let stop = start + len;
        if self.map.as_ptr() as usize != self.mapped_at {
            // Replaced by a compaction: a map of the whole new file.
            self.cap = self.map.len();
            self.mapped_at = self.map.as_ptr() as usize;
        }
        if stop > self.cap {
            self.grow(stop)?;
        }
        let Some(slot) = self.map.get_mut(start..stop).filter(|_| stop <= self.cap) else {
            return Err(JournalFault("journal: mapping too small".to_owned()));
        };
        // The head (length, CRC) first, then the payload: a process killed
        // in between leaves a head whose CRC fails and zeros after the frame,
        // a torn tail, never a payload without its head.
        let (Some((h, payload)), Some((head, rest))) = (
            slot.split_at_mut_checked(fmt::FRAME_HEAD),
            frame.split_at_checked(fmt::FRAME_HEAD),
        ) else {
            return Err(JournalFault("journal: a frame without its head".to_owned()));
        };
        h.copy_from_slice(head);
        std::sync::atomic::compiler_fence(Ordering::SeqCst);
        payload.copy_from_slice(rest);
        if self.mode == SyncMode::Power {
            let t = Instant::now();
            let synced =
                faults::check(faults::SYNC).and_then(|()| self.map.flush_range(start, len));
            if let Err(e) = synced {
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
        self.last_seq = self.undo_seq;
        for_bits(std::mem::take(&mut self.undo_mask), |i| {
            if let (Some(last), Some(old)) = (self.last.get_mut(i), self.undo_values.get(i)) {
                *last = *old;
            }
        });
        self.stats.records = self.stats.records.saturating_sub(1);
    }

    /// Allocate the file up to `needed` (whole chunks) and take the page
    /// faults of the new part now, in one call; map it again only when the
    /// reserved address space is too small.
    fn grow(&mut self, needed: usize) -> Result<(), JournalFault> {
        let cap = round_up(needed);
        allocate(&self.file, self.cap, cap)
            .map_err(|e| JournalFault::io("grow", &self.path, &e))?;
        if cap > self.map.len() {
            let reserve = RESERVE.max(cap.saturating_mul(2));
            // SAFETY: the file is ours (locked), and only this writer maps it
            // for writing; nothing past `cap` (the end of the file) is touched.
            let map = unsafe { MmapOptions::new().len(reserve).map_mut(&*self.file) }
                .map_err(|e| JournalFault::io("map", &self.path, &e))?;
            self.map = map;
            self.mapped_at = self.map.as_ptr() as usize;
        }
        self.cap = cap;
        prefault_range(&mut self.map, self.end, self.cap);
        Ok(())
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
        if self.map.as_ptr() as usize == self.mapped_at {
            self.cap
        } else {
            self.map.len()
        }
    }

    pub fn stats(&self) -> Stats {
        let mut s = self.stats.clone();
        self.background_stats(&mut s);
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
        faults::check(faults::SYNC)
            .and_then(|()| self.map.flush_range(0, self.end))
            .map_err(|e| JournalFault::io("sync", &self.path, &e))?;
        self.note_sync(t.elapsed().as_secs_f64());
        Ok(())
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.finish_compactions();
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
/// than one append in a dozen later.
fn prefault(map: &mut MmapMut, from: usize) {
    let to = map.len();
    prefault_range(map, from, to);
}

/// `prefault` of the pages in `from..to` (inside the file):
/// `MADV_POPULATE_WRITE` (Linux 5.14), else each byte is written back
/// unchanged.
fn prefault_range(map: &mut MmapMut, from: usize, to: usize) {
    let from = from - from % PAGE;
    let to = to.min(map.len());
    if from >= to || populate(map.as_ptr() as usize + from, to - from) != Populated::Unsupported {
        return;
    }
    let mut off = from;
    while off < to {
        if let Some(byte) = map.get_mut(off) {
            let p: *mut u8 = byte;
            // SAFETY: `p` points into the mapping; only this writer writes it.
            unsafe { std::ptr::write_volatile(p, std::ptr::read_volatile(p)) };
        }
        off += PAGE;
    }
}

#[derive(PartialEq, Eq)]
enum Populated {
    Done,
    /// Before Linux 5.14.
    Unsupported,
    Failed,
}

/// `madvise(MADV_POPULATE_WRITE)`: fault the pages in writable, contents
/// unchanged (a range past the end of the file fails, with no signal).
fn populate(addr: usize, len: usize) -> Populated {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: populating never changes the contents of memory.
        let rc =
            unsafe { libc::madvise(addr as *mut libc::c_void, len, libc::MADV_POPULATE_WRITE) };
        if rc == 0 {
            Populated::Done
        } else if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
            Populated::Unsupported
        } else {
            Populated::Failed
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (addr, len);
        Populated::Unsupported
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
            Vec::new(),
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

    #[test]
    fn record_times_read_the_boot_clock_and_the_wall_clock_by_its_offset() {
        let mut w = writer("times");
        w.fixed_times = None;
        let (wall, boot) = w.record_times();
        let (wall2, boot2) = w.record_times();
        assert!(boot2 >= boot);
        assert!((wall2 - boot2 - (wall - boot)).abs() < 1e-6); // the same offset
        let (real, _) = now(None);
        assert!((real - wall2).abs() < 0.01, "{real} vs {wall2}");
        w.offset_at -= 2.0 * OFFSET_FOR; // stale: both clocks read again
        w.wall_offset += 3600.0;
        let (wall3, _) = w.record_times();
        assert!((wall3 - now(None).0).abs() < 0.01);
        w.fix_times((5.0, 6.0));
        assert_eq!(w.record_times(), (5.0, 6.0));
        let _ = std::fs::remove_dir_all(w.path.parent().unwrap());
    }

    /// Frames of `w` from the header on: (kind, seq) each, checked whole.
    fn frames(w: &Writer) -> Vec<(u8, u64)> {
        let b = w.bytes();
        let mut out = Vec::new();
        let mut at = fmt::HEADER_LEN;
        while at < b.len() {
            let len = u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as usize;
            let crc = u32::from_le_bytes(b[at + 4..at + 8].try_into().unwrap());
            let payload = &b[at + 8..at + 8 + len];
            assert_eq!(crc32c::crc32c(payload), crc, "frame at {at}");
            out.push((
                payload[0],
                u64::from_le_bytes(payload[1..9].try_into().unwrap()),
            ));
            at += 8 + len;
        }
        assert_eq!(at, b.len());
        out
    }

    #[test]
    fn the_file_grows_and_is_compacted_under_appends() {
        let mut w = writer("grow");
        let counts = [0; KEYS.len()];
        let body = vec![b'x'; 1000];
        let mut appended = 0;
        for round in 0..2 {
            while w.end() < 3 * CHUNK + CHUNK / 2 {
                w.append(Kind::Put, &counts, &body).unwrap();
                appended += 1;
            }
            let f = frames(&w);
            assert!(f.windows(2).all(|p| p[1].1 == p[0].1 + 1));
            assert_eq!(w.capacity(), 4 * CHUNK);
            assert_eq!(w.file.metadata().unwrap().len(), 4 * CHUNK as u64);
            if round == 0 {
                // A compaction maps a new file of its own size: the writer
                // notices, and grows that one too.
                w.rewrite(&counts, vec![Arc::from(body.as_slice())])
                    .unwrap();
                assert_eq!(frames(&w).len(), 3);
            }
        }
        assert!(appended > 7000);
        let _ = std::fs::remove_dir_all(w.path.parent().unwrap());
    }
}
