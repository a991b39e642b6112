//! Keypoint layouts shipped as data in `assets/skeleton/`.

use serde::Deserialize;

const IMIGUE36: &str = include_str!("../../assets/skeleton/imigue36.toml");

/// Number of OpenPose groups in the iMiGUE release: BODY_25 + face-70 + 2 × hand-21.
pub const OPENPOSE_GROUPS: usize = 137;

#[derive(Debug, Clone, Deserialize)]
pub struct Skeleton {
    pub name: String,
    /// For each keypoint, the OpenPose-137 group it is taken from.
    pub openpose_groups: Vec<usize>,
    pub names: Vec<String>,
    pub limbs: Vec<[usize; 2]>,
    pub left_kp: Vec<usize>,
    pub right_kp: Vec<usize>,
    pub left_limb: Vec<usize>,
    pub right_limb: Vec<usize>,
}

impl Skeleton {
    /// MM-Gesture's 36 keypoints.
    pub fn imigue36() -> Skeleton {
        // Compiled-in asset, checked by the tests below: failure is a build defect.
        match toml::from_str::<Skeleton>(IMIGUE36) {
            Ok(s) => s,
            Err(e) => panic!("built-in skeleton imigue36 is malformed: {e}"),
        }
    }

    pub fn len(&self) -> usize {
        self.openpose_groups.len()
    }

    pub fn is_empty(&self) -> bool {
        self.openpose_groups.is_empty()
    }

    /// Keypoint permutation for a horizontal flip: `perm[k]` is the keypoint k maps to.
    pub fn flip_permutation(&self) -> Vec<usize> {
        let mut perm: Vec<usize> = (0..self.len()).collect();
        for (&l, &r) in self.left_kp.iter().zip(&self.right_kp) {
            perm[l] = r;
            perm[r] = l;
        }
        perm
    }

    /// Reduces one frame of 137 OpenPose (x, y, c) groups to this skeleton.
    pub fn reduce_openpose(&self, groups: &[[f32; 3]]) -> Vec<[f32; 3]> {
        self.openpose_groups
            .iter()
            .map(|&g| groups.get(g).copied().unwrap_or([0.0; 3]))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imigue36_matches_mm_gesture_tables() {
        let s = Skeleton::imigue36();
        assert_eq!(s.len(), 36);
        assert_eq!(s.names.len(), 36);
        assert_eq!(s.limbs.len(), 36);
        assert!(s.limbs.iter().all(|l| l[0] < 36 && l[1] < 36));
        assert_eq!(s.left_kp.len(), s.right_kp.len());
        assert_eq!(s.left_limb.len(), 17);
        assert_eq!(s.right_limb.len(), 17);
        assert_eq!(s.openpose_groups[14], 33);
        assert_eq!(s.openpose_groups[35], 136);
        // A flip swaps the two wrists and keeps the nose.
        let p = s.flip_permutation();
        assert_eq!(p[4], 7);
        assert_eq!(p[7], 4);
        assert_eq!(p[0], 0);
        let mut twice: Vec<usize> = p.iter().map(|&k| p[k]).collect();
        twice.dedup();
        assert_eq!(twice.len(), 36);
        assert!(twice.iter().enumerate().all(|(i, &k)| i == k));
        // Limb flip pairs map to limbs that join flipped keypoints.
        for (&a, &b) in s.left_limb.iter().zip(&s.right_limb) {
            let la = s.limbs[a];
            let lb = s.limbs[b];
            let fa = [p[la[0]], p[la[1]]];
            assert!(fa == lb || fa == [lb[1], lb[0]], "limb {a} vs {b}");
        }
    }

    #[test]
    fn reduction_picks_the_right_groups() {
        let s = Skeleton::imigue36();
        let frame: Vec<[f32; 3]> = (0..137).map(|g| [g as f32, 0.5, 0.9]).collect();
        let r = s.reduce_openpose(&frame);
        assert_eq!(r[12], [27.0, 0.5, 0.9]);
        assert_eq!(r[24], [95.0, 0.5, 0.9]);
    }
}
