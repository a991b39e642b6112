//! Decoded frames kept under a memory budget, and a background prefetcher that fills the cache
//! around a cursor so scrubbing never waits on the decoder.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::decode::{FrameIndex, RgbFrame, VideoReader};

/// 2 GiB: about 3,000 frames at 640×360 or 340 at 1080p, a fraction of a 24 GiB machine.
pub const DEFAULT_BUDGET_BYTES: usize = 2 << 30;

type Key = (u64, usize);

struct Entry {
    frame: Arc<RgbFrame>,
    last_used: u64,
}

#[derive(Default)]
struct Inner {
    map: HashMap<Key, Entry>,
    bytes: usize,
    tick: u64,
}

/// A least-recently-used frame cache shared by the UI and the prefetch workers.
pub struct FrameCache {
    budget: usize,
    inner: Mutex<Inner>,
}

impl FrameCache {
    pub fn new(budget_bytes: usize) -> FrameCache {
        FrameCache {
            budget: budget_bytes,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves only a cache behind: keep using it.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, video: u64, index: usize) -> Option<Arc<RgbFrame>> {
        let mut g = self.lock();
        g.tick += 1;
        let tick = g.tick;
        g.map.get_mut(&(video, index)).map(|e| {
            e.last_used = tick;
            e.frame.clone()
        })
    }

    pub fn contains(&self, video: u64, index: usize) -> bool {
        self.lock().map.contains_key(&(video, index))
    }

    /// How many of `indices` are cached, under one lock (the UI asks every frame while the
    /// prefetcher, which needs the same lock, is behind).
    pub fn count_present(&self, video: u64, indices: impl IntoIterator<Item = usize>) -> usize {
        let g = self.lock();
        indices
            .into_iter()
            .filter(|&i| g.map.contains_key(&(video, i)))
            .count()
    }

    pub fn insert(&self, video: u64, frame: Arc<RgbFrame>) {
        let size = frame.data.len();
        let mut g = self.lock();
        g.tick += 1;
        let tick = g.tick;
        if let Some(old) = g.map.insert(
            (video, frame.index),
            Entry {
                frame,
                last_used: tick,
            },
        ) {
            g.bytes -= old.frame.data.len();
        }
        g.bytes += size;
        while g.bytes > self.budget && g.map.len() > 1 {
            // Linear scan: the cache holds thousands of frames at most, and eviction is rare
            // next to decoding.
            let Some((&victim, _)) = g.map.iter().min_by_key(|(_, e)| e.last_used) else {
                break;
            };
            if let Some(e) = g.map.remove(&victim) {
                g.bytes -= e.frame.data.len();
            }
        }
    }

    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Stable key of a video file for the cache.
pub fn video_key(path: &Path) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    path.hash(&mut h);
    h.finish()
}

/// Decodes frames around a cursor on its own thread. Moving the cursor cancels the work for
/// the old position at the next frame.
pub struct Prefetcher {
    /// (cursor, playing backwards).
    tx: Option<mpsc::Sender<(usize, bool)>>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
    pub key: u64,
    errors: Arc<Mutex<Vec<String>>>,
}

impl Prefetcher {
    /// `ahead` frames after the cursor and `behind` before it are kept decoded.
    pub fn spawn(
        path: PathBuf,
        index: FrameIndex,
        cache: Arc<FrameCache>,
        ahead: usize,
        behind: usize,
        on_frame: Box<dyn Fn() + Send>,
    ) -> Prefetcher {
        let (tx, rx) = mpsc::channel::<(usize, bool)>();
        let stop = Arc::new(AtomicBool::new(false));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let key = video_key(&path);
        let (stop2, errors2) = (stop.clone(), errors.clone());
        let keyframes = index.keyframes.clone();
        let handle = std::thread::Builder::new()
            .name("mgscope-prefetch".into())
            .spawn(move || {
                let mut reader = match VideoReader::open_with_index(&path, index) {
                    Ok(r) => r,
                    Err(e) => {
                        errors2
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(e.to_string());
                        return;
                    }
                };
                let n = reader.len();
                let mut cursor = match rx.recv() {
                    Ok(c) => c,
                    Err(_) => return,
                };
                loop {
                    if stop2.load(Ordering::Relaxed) {
                        return;
                    }
                    let order = plan(cursor.0, n, ahead, behind, cursor.1, &keyframes);
                    let mut moved = None;
                    for i in order {
                        if let Ok(c) = rx.try_recv() {
                            moved = Some(latest(c, &rx));
                            break;
                        }
                        if stop2.load(Ordering::Relaxed) {
                            return;
                        }
                        if cache.contains(key, i) {
                            continue;
                        }
                        match reader.frame(i) {
                            Ok(f) => {
                                cache.insert(key, Arc::new(f));
                                on_frame();
                            }
                            Err(e) => errors2
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .push(e.to_string()),
                        }
                    }
                    cursor = match moved {
                        Some(c) => c,
                        None => match rx.recv() {
                            Ok(c) => latest(c, &rx),
                            Err(_) => return,
                        },
                    };
                }
            })
            .ok();
        Prefetcher {
            tx: Some(tx),
            stop,
            handle,
            key,
            errors,
        }
    }

    pub fn set_cursor(&self, frame: usize) {
        self.set_cursor_dir(frame, false);
    }

    /// Like `set_cursor`; `backward` while playback runs in reverse, so that the frames before
    /// the cursor are the ones kept decoded.
    pub fn set_cursor_dir(&self, frame: usize, backward: bool) {
        if let Some(tx) = &self.tx {
            let _ = tx.send((frame, backward));
        }
    }

    /// Errors the worker met (damaged frames), oldest first; drained by the call.
    pub fn take_errors(&self) -> Vec<String> {
        std::mem::take(&mut *self.errors.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// The frames to decode around `cursor`, in order. Forward: the cursor and `ahead` frames
/// after it (what playback needs next), then `behind` frames before it. Backward: from the
/// keyframe that starts the GOP `ahead` frames before the cursor up to the cursor, in
/// presentation order — one seek and a sequential decode that keeps every frame it passes,
/// where decoding the frames one by one backwards would seek and re-decode a GOP for each —
/// then `behind` frames after it.
fn plan(
    cursor: usize,
    n: usize,
    ahead: usize,
    behind: usize,
    backward: bool,
    keyframes: &[usize],
) -> Vec<usize> {
    let Some(last) = n.checked_sub(1) else {
        return Vec::new();
    };
    let cursor = cursor.min(last);
    if backward {
        let want = cursor.saturating_sub(ahead);
        let start = match keyframes.binary_search(&want) {
            Ok(i) => keyframes[i],
            Err(0) => 0,
            Err(i) => keyframes[i - 1],
        };
        (start..=cursor)
            .chain(cursor + 1..=(cursor + behind).min(last))
            .collect()
    } else {
        let lo = cursor.saturating_sub(behind);
        (cursor..=(cursor + ahead).min(last))
            .chain((lo..cursor).rev())
            .collect()
    }
}

fn latest(mut c: (usize, bool), rx: &mpsc::Receiver<(usize, bool)>) -> (usize, bool) {
    while let Ok(n) = rx.try_recv() {
        c = n;
    }
    c
}

impl Drop for Prefetcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.tx = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(index: usize, bytes: usize) -> Arc<RgbFrame> {
        Arc::new(RgbFrame {
            index,
            width: 1,
            height: 1,
            data: vec![index as u8; bytes],
        })
    }

    #[test]
    fn lru_respects_the_budget_and_keeps_recent_frames() {
        let c = FrameCache::new(1000);
        for i in 0..5 {
            c.insert(1, frame(i, 300));
        }
        assert!(c.bytes() <= 1000);
        assert_eq!(c.len(), 3);
        assert!(c.get(1, 0).is_none() && c.get(1, 1).is_none());
        // Touch 2, insert 5: 3 is the least recently used and goes.
        assert!(c.get(1, 2).is_some());
        c.insert(1, frame(5, 300));
        assert!(c.get(1, 3).is_none());
        assert!(c.get(1, 2).is_some() && c.get(1, 4).is_some() && c.get(1, 5).is_some());
        // Re-inserting a frame does not double count it.
        c.insert(1, frame(5, 300));
        assert_eq!(c.bytes(), 900);
        // Another video's frame 5 is a different entry.
        assert!(c.get(2, 5).is_none());
    }

    #[test]
    fn forward_plan_is_ahead_then_behind() {
        let p = plan(10, 100, 3, 2, false, &[0, 50]);
        assert_eq!(p, [10, 11, 12, 13, 9, 8]);
        // Clipped at the end of the video.
        assert_eq!(plan(98, 100, 3, 1, false, &[0]), [98, 99, 97]);
    }

    #[test]
    fn backward_plan_decodes_whole_gops_in_presentation_order() {
        let kf = [0, 30, 60, 90];
        // 48 before 70 is 22, whose GOP starts at 0.
        let p = plan(70, 100, 48, 2, true, &kf);
        assert_eq!(p.first(), Some(&0));
        assert_eq!(&p[p.len() - 3..], [70, 71, 72]);
        assert!(p.windows(2).all(|w| w[1] == w[0] + 1));
        // Landing exactly on a keyframe starts there.
        assert_eq!(plan(70, 100, 10, 0, true, &kf).first(), Some(&60));
        assert_eq!(plan(5, 100, 10, 0, true, &kf), (0..=5).collect::<Vec<_>>());
        assert!(plan(5, 0, 10, 0, true, &kf).is_empty());
    }
}
