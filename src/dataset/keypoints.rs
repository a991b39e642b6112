//! Per-frame keypoints of a video: `[frames, persons, joints, (x, y, score)]`, f32.

use crate::{Error, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct Keypoints {
    /// Name of the joint layout (`imigue36`, `openpose-pose25`, …).
    pub layout: String,
    pub frames: usize,
    pub persons: usize,
    pub joints: usize,
    /// `frames * persons * joints * 3` values: x, y (pixels), score.
    pub data: Vec<f32>,
}

impl Keypoints {
    pub fn zeros(layout: &str, frames: usize, persons: usize, joints: usize) -> Keypoints {
        Keypoints {
            layout: layout.to_string(),
            frames,
            persons,
            joints,
            data: vec![0.0; frames * persons * joints * 3],
        }
    }

    fn offset(&self, frame: usize, person: usize, joint: usize) -> usize {
        ((frame * self.persons + person) * self.joints + joint) * 3
    }

    pub fn get(&self, frame: usize, person: usize, joint: usize) -> [f32; 3] {
        let o = self.offset(frame, person, joint);
        match self.data.get(o..o + 3) {
            Some(s) => [s[0], s[1], s[2]],
            None => [0.0; 3],
        }
    }

    pub fn set(&mut self, frame: usize, person: usize, joint: usize, v: [f32; 3]) {
        let o = self.offset(frame, person, joint);
        if let Some(s) = self.data.get_mut(o..o + 3) {
            s.copy_from_slice(&v);
        }
    }

    /// Frames `start..=end` as a new block (clamped to what exists).
    pub fn slice_frames(&self, start: usize, end: usize) -> Keypoints {
        let end = end.min(self.frames.saturating_sub(1));
        let n = if self.frames == 0 || start > end {
            0
        } else {
            end - start + 1
        };
        let per_frame = self.persons * self.joints * 3;
        let data = if n == 0 {
            Vec::new()
        } else {
            self.data[start * per_frame..(start + n) * per_frame].to_vec()
        };
        Keypoints {
            layout: self.layout.clone(),
            frames: n,
            persons: self.persons,
            joints: self.joints,
            data,
        }
    }

    /// pyskl's notion of a missing point: x == 0 or y == 0 (OpenPose writes (0, 0, 0)).
    pub fn is_missing(p: [f32; 3]) -> bool {
        p[0] == 0.0 || p[1] == 0.0
    }

    pub fn missing_count(&self) -> usize {
        self.data
            .chunks_exact(3)
            .filter(|p| Self::is_missing([p[0], p[1], p[2]]))
            .count()
    }

    pub fn point_count(&self) -> usize {
        self.data.len() / 3
    }

    /// pyskl's layout: keypoints `[M, T, V, 2]` and scores `[M, T, V]`, C order.
    pub fn to_pyskl(&self) -> (Vec<f32>, Vec<f32>) {
        let (m, t, v) = (self.persons, self.frames, self.joints);
        let mut xy = Vec::with_capacity(m * t * v * 2);
        let mut sc = Vec::with_capacity(m * t * v);
        for mi in 0..m {
            for ti in 0..t {
                for vi in 0..v {
                    let p = self.get(ti, mi, vi);
                    xy.extend_from_slice(&p[..2]);
                    sc.push(p[2]);
                }
            }
        }
        (xy, sc)
    }

    /// Little-endian f32 bytes for the store.
    pub fn to_blob(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.data.len() * 4);
        for v in &self.data {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out
    }

    pub fn from_blob(
        layout: &str,
        frames: usize,
        persons: usize,
        joints: usize,
        blob: &[u8],
    ) -> Result<Keypoints> {
        let expected = frames * persons * joints * 3 * 4;
        if blob.len() != expected {
            return Err(Error::Invalid(format!(
                "keypoint blob of {} bytes, expected {expected} for {frames} frames × {persons} persons × {joints} joints × 3 × f32",
                blob.len()
            )));
        }
        let data = blob
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        Ok(Keypoints {
            layout: layout.to_string(),
            frames,
            persons,
            joints,
            data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_round_trip_and_slicing() {
        let mut k = Keypoints::zeros("imigue36", 4, 2, 36);
        k.set(2, 1, 35, [1.5, -2.0, 0.25]);
        k.set(3, 0, 0, [7.0, 8.0, 0.9]);
        let b = k.to_blob();
        let k2 = Keypoints::from_blob("imigue36", 4, 2, 36, &b).map_err(|e| e.to_string());
        assert_eq!(k2, Ok(k.clone()));
        assert!(Keypoints::from_blob("imigue36", 5, 2, 36, &b).is_err());
        let s = k.slice_frames(2, 3);
        assert_eq!(s.frames, 2);
        assert_eq!(s.get(0, 1, 35), [1.5, -2.0, 0.25]);
        assert_eq!(s.get(1, 0, 0), [7.0, 8.0, 0.9]);
        assert_eq!(k.missing_count(), 4 * 2 * 36 - 2);
    }
}
