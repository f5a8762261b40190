//! Compaction off the calling thread. The change that crosses the threshold
//! collects the live bodies (shared, not copied), reserves the snapshot's
//! sequence numbers and hands it to a thread, which writes the new file beside
//! the journal, syncs, locks and maps it. Appends meanwhile go on in the old
//! file, which stays complete until the rename. A later change (or `settle`)
//! copies those frames after the snapshot, renames the new file over the old
//! one and syncs the directory: at once in the power and group modes, in the
//! thread in process mode. Settled, the file holds the bytes the pure
//! backend's synchronous compaction writes (docs/state-and-journal.md).

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use memmap2::{MmapMut, MmapOptions};

use super::{
    allocate, faults, lock_fd, prefault, rand_u64, round_up, sync_dir, JournalFault, SyncMode,
    Writer,
};
use crate::journal_format::{self as fmt, Counts, Kind};
use crate::sync::lock;

/// Tests only: hold finished compactions back (`super::faults` fails them).
#[derive(Clone, Default)]
pub struct Knobs {
    pub hold: Option<Arc<Gate>>,
}

/// A latch a compaction thread waits at before handing its file over.
#[derive(Default)]
pub struct Gate {
    held: Mutex<bool>,
    cv: Condvar,
}

impl Gate {
    pub fn held() -> Arc<Self> {
        Arc::new(Gate {
            held: Mutex::new(true),
            cv: Condvar::new(),
        })
    }

    pub fn release(&self) {
        *lock(&self.held) = false;
        self.cv.notify_all();
    }

    fn wait(&self) {
        let mut held = lock(&self.held);
        while *held {
            held = self.cv.wait(held).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// Everything a snapshot holds: no Python, no reference to the writer.
struct Job {
    tmp: PathBuf,
    file_id: [u8; 16],
    boot_id: [u8; 16],
    wall: f64,
    config: Vec<u8>,
    counts: Counts,
    bodies: Vec<Arc<[u8]>>,
    seq: u64,
}

/// The new file: written, synced, locked, mapped, its spare room prefaulted.
pub struct Built {
    file: File,
    map: MmapMut,
    /// The snapshot's length, as written.
    len: usize,
    work_s: f64,
}

/// What the thread does once the writer has switched: sync the directory
/// (process mode) and release the old file (unmapping and closing an
/// unlinked file of many MiB costs milliseconds).
struct Switched {
    sync_dir: bool,
    old: (MmapMut, Arc<File>),
}

/// Errors the compaction threads met after the switch (a directory sync).
#[derive(Default)]
pub struct Background {
    pub errors: u64,
    pub last_error: Option<String>,
}

/// A compaction handed to a thread.
pub struct Pending {
    /// Where the frames appended meanwhile start in the old file.
    from: usize,
    /// The snapshot's length (the new file's bytes before those frames).
    len: usize,
    frames: u64,
    tmp: PathBuf,
    /// Set by the thread once its result is sent.
    ready: Arc<AtomicBool>,
    result: Receiver<std::io::Result<Built>>,
    switched: Sender<Switched>,
    handle: JoinHandle<()>,
}

impl Job {
    /// Write the snapshot to `tmp`, sync it, lock it, map it.
    fn run(self) -> std::io::Result<Built> {
        let t = Instant::now();
        faults::check(faults::OPEN)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&self.tmp)?;
        let written = self.fill(&file).and_then(|len| {
            let cap = round_up(len);
            allocate(&file, 0, cap)?;
            faults::check(faults::SYNC)?;
            file.sync_data()?;
            lock_fd(file.as_raw_fd())?;
            // SAFETY: the new file is ours and locked; nothing else maps it.
            let mut map = unsafe { MmapOptions::new().map_mut(&file)? };
            prefault(&mut map, len);
            Ok((map, len))
        });
        match written {
            Ok((map, len)) => Ok(Built {
                file,
                map,
                len,
                work_s: t.elapsed().as_secs_f64(),
            }),
            Err(e) => {
                let _ = std::fs::remove_file(&self.tmp);
                Err(e)
            }
        }
    }

    /// The snapshot's bytes into `file`, one frame at a time; their length.
    fn fill(&self, file: &File) -> std::io::Result<usize> {
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let mut frame = Vec::with_capacity(4096);
        let mut len = 0;
        let mut put = |frame: &mut Vec<u8>| -> std::io::Result<()> {
            out.write_all(frame)?;
            len += frame.len();
            frame.clear();
            Ok(())
        };
        frame.extend_from_slice(&fmt::header(&self.file_id, &self.boot_id, self.wall));
        fmt::frame(
            &mut frame,
            Kind::Config,
            self.seq + 1,
            &self.counts,
            &self.config,
        );
        let n = self.bodies.len() as u64;
        let snap = fmt::snapshot_body(n);
        fmt::frame(
            &mut frame,
            Kind::Snapshot,
            self.seq + 2,
            &self.counts,
            &snap,
        );
        put(&mut frame)?;
        for (i, body) in self.bodies.iter().enumerate() {
            fmt::frame(
                &mut frame,
                Kind::Put,
                self.seq + 3 + i as u64,
                &self.counts,
                body,
            );
            put(&mut frame)?;
        }
        out.flush()?;
        Ok(len)
    }
}

/// The capacity the pure backend's file has after appending `tail`'s frames
/// at `start` with capacity `cap` (it grows by chunks as it goes), and how
/// many frames `tail` holds.
fn grown(start: usize, mut cap: usize, tail: &[u8]) -> (usize, u64) {
    let mut pos = 0;
    let mut frames = 0;
    while let Some(head) = tail.get(pos..pos + 4) {
        let mut n = [0_u8; 4];
        n.copy_from_slice(head);
        let stop = pos + fmt::FRAME_HEAD + u32::from_le_bytes(n) as usize;
        if stop > tail.len() {
            break;
        }
        pos = stop;
        frames += 1;
        if start + pos > cap {
            cap = round_up(start + pos);
        }
    }
    (cap, frames)
}

/// The compaction threshold for `live` bytes of orders: max(floor, 4x live).
pub fn threshold(floor: usize, live: usize) -> usize {
    floor.max(live.saturating_mul(4))
}

/// The length of a snapshot holding `live` bytes of PUT frames.
fn snapshot_len(config: usize, live: usize) -> usize {
    fmt::HEADER_LEN + fmt::frame_len(config) + fmt::frame_len(8) + live
}

fn io_fault(what: &str, path: &Path, e: &std::io::Error) -> JournalFault {
    JournalFault::io(what, path, e)
}

impl Writer {
    /// Whether the log has grown past the threshold; while a compaction is
    /// pending, whether the settled file would have.
    pub fn wants_compaction(&self) -> bool {
        match &self.pending {
            Some(p) => p.len + self.end.saturating_sub(p.from) > self.threshold,
            None => self.end > self.threshold,
        }
    }

    /// Whether a compaction is pending.
    pub fn compacting(&self) -> bool {
        self.pending.is_some()
    }

    /// Whether a pending compaction's file is ready to switch to.
    pub fn compaction_ready(&self) -> bool {
        self.pending
            .as_ref()
            .is_some_and(|p| p.ready.load(Ordering::Acquire))
    }

    /// Tests: hold finished compactions back (until `settle(true)`).
    pub fn set_knobs(&mut self, hold: Option<bool>) {
        match hold {
            Some(true) => self.knobs.hold = Some(Gate::held()),
            Some(false) => {
                if let Some(g) = self.knobs.hold.take() {
                    g.release();
                }
            }
            None => {}
        }
    }

    fn temp_path(&self) -> PathBuf {
        let name = self
            .path
            .file_name()
            .map_or_else(|| "journal".into(), |n| n.to_string_lossy().into_owned());
        self.path
            .with_file_name(format!(".{name}.{:016x}.new", rand_u64()))
    }

    fn job(&self, counts: &Counts, bodies: Vec<Arc<[u8]>>) -> Job {
        let (wall, _) = self.times();
        Job {
            tmp: self.temp_path(),
            file_id: self.file_id,
            boot_id: self.boot_id,
            wall,
            config: self.config.clone(),
            counts: *counts,
            bodies,
            seq: self.seq,
        }
    }

    /// Replace the file by a snapshot of `bodies` now, on this thread (attach,
    /// `Journal.sync()`), after settling a pending compaction.
    pub fn rewrite(&mut self, counts: &Counts, bodies: Vec<Arc<[u8]>>) -> Result<(), JournalFault> {
        self.check_fork()?;
        self.settle(true);
        let live: usize = bodies.iter().map(|b| fmt::frame_len(b.len())).sum();
        let frames = 2 + bodies.len() as u64;
        let job = self.job(counts, bodies);
        let tmp = job.tmp.clone();
        let built = job
            .run()
            .map_err(|e| io_fault("write a snapshot", &self.path, &e))?;
        let from = self.end;
        self.seq += frames;
        let old = match self.switch(from, frames, &tmp, built) {
            Ok(old) => old,
            Err(f) => {
                self.seq -= frames;
                let _ = std::fs::remove_file(&tmp);
                return Err(f);
            }
        };
        self.live = live;
        self.threshold = threshold(self.floor, live);
        drop(old);
        sync_dir(&self.path).map_err(|e| io_fault("sync the directory", &self.path, &e))
    }

    /// Start compacting `bodies` (the live orders' bodies, in order) in a
    /// thread: the snapshot takes the next sequence numbers, the frames
    /// appended meanwhile the ones after.
    pub fn compact(&mut self, counts: &Counts, bodies: Vec<Arc<[u8]>>) -> Result<(), JournalFault> {
        self.check_fork()?;
        if self.pending.is_some() {
            return Ok(());
        }
        self.finishing.retain(|h| !h.is_finished());
        let live: usize = bodies.iter().map(|b| fmt::frame_len(b.len())).sum();
        let frames = 2 + bodies.len() as u64;
        let len = snapshot_len(self.config.len(), live);
        let job = self.job(counts, bodies);
        let tmp = job.tmp.clone();
        let (result_tx, result) = mpsc::channel();
        let (switched, switched_rx) = mpsc::channel::<Switched>();
        let hold = self.knobs.hold.clone();
        let path = self.path.clone();
        let background = self.background.clone();
        let ready = Arc::new(AtomicBool::new(false));
        let done = ready.clone();
        let handle = std::thread::Builder::new()
            .name("journal-compact".into())
            .spawn(move || {
                let built = job.run();
                if let Some(g) = hold {
                    g.wait();
                }
                if result_tx.send(built).is_err() {
                    return;
                }
                done.store(true, Ordering::Release);
                if let Ok(s) = switched_rx.recv() {
                    if s.sync_dir {
                        if let Err(e) = sync_dir(&path) {
                            let mut b = lock(&background);
                            b.errors += 1;
                            b.last_error = Some(io_fault("sync the directory", &path, &e).0);
                        }
                    }
                    drop(s.old);
                }
            })
            .map_err(|e| io_fault("start a compaction", &self.path, &e))?;
        self.pending = Some(Box::new(Pending {
            from: self.end,
            len,
            frames,
            tmp,
            ready,
            result,
            switched,
            handle,
        }));
        self.seq += frames;
        self.live = live;
        self.threshold = threshold(self.floor, live);
        Ok(())
    }

    /// Switch to a pending compaction's file if it is done (or once it is,
    /// with `wait`); a failed one is counted and retried later. Returns
    /// whether one was pending. A forked child never switches.
    pub fn settle(&mut self, wait: bool) -> bool {
        let Some(p) = &self.pending else {
            return false;
        };
        if self.forked() {
            return true;
        }
        let got = if wait {
            if let Some(g) = &self.knobs.hold {
                g.release();
            }
            p.result.recv().ok()
        } else {
            match p.result.try_recv() {
                Ok(r) => Some(r),
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => None,
            }
        };
        let Some(p) = self.pending.take() else {
            return true;
        };
        let Pending {
            from,
            len: _,
            frames,
            tmp,
            ready: _,
            result: _,
            switched,
            handle,
        } = *p;
        let outcome = match got {
            Some(Ok(built)) => self.switch(from, frames, &tmp, built),
            Some(Err(e)) => Err(io_fault("write a snapshot", &self.path, &e)),
            None => Err(JournalFault(format!(
                "journal {}: the compaction thread stopped",
                self.path.display()
            ))),
        };
        match outcome {
            Ok(old) => {
                let power = self.mode != SyncMode::Process;
                let dir = if power { sync_dir(&self.path) } else { Ok(()) };
                if let Err(e) = dir {
                    self.stats.compaction_errors += 1;
                    self.stats.last_error = Some(io_fault("sync the directory", &self.path, &e).0);
                }
                // The thread syncs the directory (process mode) and drops the old file.
                let _ = switched.send(Switched {
                    sync_dir: !power,
                    old,
                });
            }
            Err(f) => {
                let _ = std::fs::remove_file(&tmp);
                self.compaction_failed(f);
            }
        }
        drop(switched);
        self.finishing.push(handle);
        true
    }

    /// Copy the frames appended since `from` after the new file's snapshot
    /// (`frames` frames), rename it over the journal, and take it as the
    /// writer's file. Returns the old file, to drop off the hot path.
    fn switch(
        &mut self,
        from: usize,
        frames: u64,
        tmp: &Path,
        built: Built,
    ) -> Result<(MmapMut, Arc<File>), JournalFault> {
        let t = Instant::now();
        let Built {
            file,
            mut map,
            len,
            work_s,
        } = built;
        let path = self.path.clone();
        let tail = self.map.get(from..self.end).ok_or_else(|| {
            JournalFault(format!("journal {}: bad compaction point", path.display()))
        })?;
        let stop = len + tail.len();
        let (cap, tail_frames) = grown(len, map.len(), tail);
        if cap > map.len() {
            allocate(&file, map.len(), cap).map_err(|e| io_fault("grow", &path, &e))?;
            // SAFETY: the new file is ours and locked; nothing else maps it.
            map = unsafe { MmapOptions::new().map_mut(&file) }
                .map_err(|e| io_fault("map", &path, &e))?;
            prefault(&mut map, stop);
        }
        let Some(slot) = map.get_mut(len..stop) else {
            return Err(JournalFault(format!(
                "journal {}: snapshot too small",
                path.display()
            )));
        };
        slot.copy_from_slice(tail);
        if self.mode != SyncMode::Process && stop > len {
            faults::check(faults::SYNC)
                .and_then(|()| map.flush_range(len, stop - len))
                .map_err(|e| io_fault("sync", &path, &e))?;
        }
        std::fs::rename(tmp, &path).map_err(|e| io_fault("write a snapshot", &path, &e))?;
        let old_file = std::mem::replace(&mut self.file, Arc::new(file));
        if let Some((g, _)) = &self.group {
            *lock(&g.file) = self.file.clone();
        }
        let old_map = std::mem::replace(&mut self.map, map);
        // A map of the new file's whole length: all of it is allocated.
        self.cap = self.map.len();
        self.mapped_at = self.map.as_ptr() as usize;
        self.end = stop;
        self.stats.records = frames + tail_frames;
        self.stats.compactions += 1;
        let switch_s = t.elapsed().as_secs_f64();
        self.stats.last_compaction_s = work_s + switch_s;
        self.stats.last_switch_s = switch_s;
        Ok((old_map, old_file))
    }

    /// Before the writer goes: finish a pending compaction and the threads
    /// (a forked child leaves them: they live in the parent).
    pub(super) fn finish_compactions(&mut self) {
        if self.forked() {
            std::mem::forget(self.pending.take());
            std::mem::forget(std::mem::take(&mut self.finishing));
            return;
        }
        if let Some(g) = self.knobs.hold.take() {
            g.release();
        }
        self.settle(true);
        for h in self.finishing.drain(..) {
            let _ = h.join();
        }
    }

    /// Merge the threads' errors into `stats`.
    pub(super) fn background_stats(&self, s: &mut super::Stats) {
        let b = lock(&self.background);
        s.compaction_errors += b.errors;
        if b.last_error.is_some() {
            s.last_error.clone_from(&b.last_error);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_is_the_floor_or_four_times_the_live_size() {
        let c = super::super::CHUNK;
        assert_eq!(threshold(8192, 100), 8192);
        assert_eq!(threshold(c, 0), c);
        assert_eq!(threshold(c, c), 4 * c);
        assert_eq!(threshold(c, c / 2 + 1), 2 * c + 4);
    }

    #[test]
    fn a_snapshot_has_the_length_the_writer_expects() {
        let bodies: Vec<Arc<[u8]>> = vec![Arc::from(&b"abc"[..]), Arc::from(&[7_u8; 300][..])];
        let live = bodies.iter().map(|b| fmt::frame_len(b.len())).sum();
        let tmp = std::env::temp_dir().join(format!(".exec-router-snap-{:016x}.new", rand_u64()));
        let job = Job {
            tmp: tmp.clone(),
            file_id: [1; 16],
            boot_id: [2; 16],
            wall: 3.0,
            config: b"cfg".to_vec(),
            counts: [5; crate::counters::KEYS.len()],
            bodies,
            seq: 9,
        };
        let built = job.run().map_err(|e| e.to_string()).unwrap();
        assert_eq!(built.len, snapshot_len(3, live));
        assert_eq!(built.map.len(), round_up(built.len));
        assert_eq!(built.map[..8], fmt::MAGIC);
        let _ = std::fs::remove_file(&tmp);
    }

    #[test]
    fn grown_follows_whole_frames() {
        let mut tail = Vec::new();
        fmt::frame(
            &mut tail,
            Kind::Pop,
            1,
            &[0; crate::counters::KEYS.len()],
            b"ab",
        );
        let one = tail.len();
        tail.extend_from_within(..);
        tail.extend_from_slice(&[1, 0]);
        assert_eq!(grown(0, 1 << 20, &tail), (1 << 20, 2));
        let start = (1 << 20) - one - 1;
        assert_eq!(grown(start, 1 << 20, &tail), (2 << 20, 2));
    }
}
