//! CPU twins of the colormaps in `shaders/common.wgsl`, for legends and for the tests that hold
//! the GPU panes to them.

/// Turbo (Google, 2019), the authors' polynomial fit; `t` is clamped to [0, 1].
pub fn turbo(t: f32) -> [f32; 3] {
    let t = t.clamp(0.0, 1.0);
    let v4 = [1.0, t, t * t, t * t * t];
    let v2 = [v4[2] * v4[2], v4[3] * v4[2]];
    let dot4 = |c: [f32; 4]| c[0] * v4[0] + c[1] * v4[1] + c[2] * v4[2] + c[3] * v4[3];
    let dot2 = |c: [f32; 2]| c[0] * v2[0] + c[1] * v2[1];
    let r =
        dot4([0.135_721_38, 4.615_392_6, -42.660_324, 132.131_08]) + dot2([-152.942_4, 59.286_38]);
    let g =
        dot4([0.091_402_61, 2.194_188_4, 4.842_966_6, -14.185_033]) + dot2([4.277_299, 2.829_566]);
    let b = dot4([0.106_673_3, 12.641_946, -60.582_05, 110.362_77]) + dot2([-89.903_11, 27.348_25]);
    [r.clamp(0.0, 1.0), g.clamp(0.0, 1.0), b.clamp(0.0, 1.0)]
}

/// Inferno (matplotlib), Matt Zucker's degree-6 polynomial fit.
pub fn inferno(t: f32) -> [f32; 3] {
    let t = t.clamp(0.0, 1.0);
    const C: [[f32; 3]; 7] = [
        [0.000_218_940_37, 0.001_651_004_6, -0.019_480_898],
        [0.106_513_42, 0.563_956_4, 3.932_712_4],
        [11.602_493, -3.972_854, -15.942_394],
        [-41.703_995, 17.436_4, 44.354_145],
        [77.162_94, -33.402_36, -81.807_31],
        [-71.319_43, 32.626_064, 73.209_52],
        [25.131_126, -12.242_669, -23.070_326],
    ];
    let mut out = [0.0f32; 3];
    for (ch, o) in out.iter_mut().enumerate() {
        let mut acc = C[6][ch];
        for k in (0..6).rev() {
            acc = C[k][ch] + t * acc;
        }
        *o = acc.clamp(0.0, 1.0);
    }
    out
}

/// The colormaps a pane can use; the discriminant is the shader's `params.colormap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum Colormap {
    Gray,
    #[default]
    Turbo,
    Inferno,
}

impl Colormap {
    pub const ALL: [Colormap; 3] = [Colormap::Gray, Colormap::Turbo, Colormap::Inferno];

    pub fn name(self) -> &'static str {
        match self {
            Colormap::Gray => "gray",
            Colormap::Turbo => "turbo",
            Colormap::Inferno => "inferno",
        }
    }

    pub fn index(self) -> u32 {
        match self {
            Colormap::Gray => 0,
            Colormap::Turbo => 1,
            Colormap::Inferno => 2,
        }
    }

    pub fn map(self, t: f32) -> [f32; 3] {
        match self {
            Colormap::Gray => {
                let v = t.clamp(0.0, 1.0);
                [v, v, v]
            }
            Colormap::Turbo => turbo(t),
            Colormap::Inferno => inferno(t),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turbo_runs_blue_to_dark_red_through_green() {
        let lo = turbo(0.1);
        let mid = turbo(0.5);
        let hi = turbo(1.0);
        assert!(lo[2] > lo[0] && lo[2] > lo[1] && lo[2] > 0.6, "{lo:?}");
        assert!(
            mid[1] > 0.9 && mid[1] > mid[0] && mid[1] > mid[2],
            "{mid:?}"
        );
        assert!(hi[0] > 0.45 && hi[0] > hi[1] && hi[0] > hi[2], "{hi:?}");
    }

    #[test]
    fn inferno_is_black_to_pale_yellow_and_monotone_in_luminance() {
        let l = |c: [f32; 3]| 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
        assert!(l(inferno(0.0)) < 0.02);
        assert!(inferno(1.0)[0] > 0.95 && inferno(1.0)[1] > 0.95);
        let mut prev = -1.0;
        for i in 0..=100 {
            let v = l(inferno(i as f32 / 100.0));
            assert!(v > prev - 1e-3, "luminance drops at {i}: {v} < {prev}");
            prev = v;
        }
    }
}
