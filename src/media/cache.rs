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
    tx: Option<mpsc::Sender<usize>>,
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
        let (tx, rx) = mpsc::channel::<usize>();
        let stop = Arc::new(AtomicBool::new(false));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let key = video_key(&path);
        let (stop2, errors2) = (stop.clone(), errors.clone());
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
                    // Forward first (what playback needs next), then the frames behind.
                    let lo = cursor.saturating_sub(behind);
                    let hi = (cursor + ahead).min(n.saturating_sub(1));
                    let order = (cursor..=hi).chain((lo..cursor).rev());
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
        if let Some(tx) = &self.tx {
            let _ = tx.send(frame);
        }
    }

    /// Errors the worker met (damaged frames), oldest first; drained by the call.
    pub fn take_errors(&self) -> Vec<String> {
        std::mem::take(&mut *self.errors.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

fn latest(mut c: usize, rx: &mpsc::Receiver<usize>) -> usize {
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
}
