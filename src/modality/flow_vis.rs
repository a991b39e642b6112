//! Flow visualisation (Middlebury colour wheel) and the end-point error.
//!
//! The colour coding is Baker et al., "A Database and Evaluation Methodology for Optical Flow",
//! IJCV 2011 (`flowToColor` / `computeColor` of the Middlebury flow-code), in the form RAFT's
//! `flow_viz.flow_to_image` uses, which is what MM-Gesture's flow videos are made with: the
//! field is divided by its largest vector length (+1e-5) unless a maximum is given.

use super::flow::{FlowError, FlowField};

/// Segment lengths of the 55-colour wheel: red→yellow, yellow→green, green→cyan, cyan→blue,
/// blue→magenta, magenta→red.
const RY: usize = 15;
const YG: usize = 6;
const GC: usize = 4;
const CB: usize = 11;
const BM: usize = 13;
const MR: usize = 6;
const NCOLS: usize = RY + YG + GC + CB + BM + MR;

/// The Middlebury colour wheel (`makecolorwheel`), RGB 0..255.
pub fn color_wheel() -> [[f64; 3]; NCOLS] {
    let mut wheel = [[0.0f64; 3]; NCOLS];
    let ramp = |i: usize, n: usize| (255 * i / n) as f64;
    let mut k = 0;
    for i in 0..RY {
        wheel[k] = [255.0, ramp(i, RY), 0.0];
        k += 1;
    }
    for i in 0..YG {
        wheel[k] = [255.0 - ramp(i, YG), 255.0, 0.0];
        k += 1;
    }
    for i in 0..GC {
        wheel[k] = [0.0, 255.0, ramp(i, GC)];
        k += 1;
    }
    for i in 0..CB {
        wheel[k] = [0.0, 255.0 - ramp(i, CB), 255.0];
        k += 1;
    }
    for i in 0..BM {
        wheel[k] = [ramp(i, BM), 0.0, 255.0];
        k += 1;
    }
    for i in 0..MR {
        wheel[k] = [255.0, 0.0, 255.0 - ramp(i, MR)];
        k += 1;
    }
    wheel
}

/// Colour of one normalised vector (`computeColor`): hue from the angle of (u, v) on the wheel,
/// saturation from the length (white at 0, full colour at 1, darkened by 0.75 beyond 1).
/// Non-finite vectors are black, as Middlebury's unknown flow. The angle arithmetic is in `f32`
/// and the colour mixing in `f64`, as RAFT's numpy code does on a float32 flow, so that the
/// `floor` lands on the same side.
pub fn vector_color(u: f32, v: f32, wheel: &[[f64; 3]; NCOLS]) -> [u8; 3] {
    if !(u.is_finite() && v.is_finite()) {
        return [0, 0, 0];
    }
    let rad = (u * u + v * v).sqrt();
    let a = (-v).atan2(-u) / std::f32::consts::PI;
    let fk = (a + 1.0) / 2.0 * (NCOLS - 1) as f32;
    let k0 = (fk.floor().max(0.0) as usize).min(NCOLS - 1);
    let k1 = (k0 + 1) % NCOLS;
    let f = fk - k0 as f32;
    let mut out = [0u8; 3];
    for (ch, o) in out.iter_mut().enumerate() {
        let col0 = wheel[k0][ch] / 255.0;
        let col1 = wheel[k1][ch] / 255.0;
        let mut col = f64::from(1.0 - f) * col0 + f64::from(f) * col1;
        if rad <= 1.0 {
            col = 1.0 - f64::from(rad) * (1.0 - col);
        } else {
            col *= 0.75;
        }
        *o = (255.0 * col).floor().clamp(0.0, 255.0) as u8;
    }
    out
}

/// RGB24 image (`[H, W, 3]`) of `flow`, each vector divided by `max_magnitude`, or by the
/// field's own largest length + 1e-5 when `None` (RAFT / MM-Gesture per-frame normalisation).
pub fn flow_to_rgb(flow: &FlowField, max_magnitude: Option<f32>) -> Result<Vec<u8>, FlowError> {
    let n = flow.width * flow.height;
    if flow.data.len() != n * 2 {
        return Err(FlowError::BufferLength {
            what: "flow field",
            width: flow.width,
            height: flow.height,
            channels: 2,
            len: flow.data.len(),
            expected: n * 2,
        });
    }
    let scale = match max_magnitude {
        Some(m) if m.is_finite() && m > 0.0 => m,
        Some(m) => {
            return Err(FlowError::InvalidParams(format!(
                "max_magnitude {m} (must be finite and > 0)"
            )))
        }
        None => flow.max_magnitude() + 1e-5,
    };
    let wheel = color_wheel();
    let mut rgb = Vec::with_capacity(n * 3);
    for p in flow.data.chunks_exact(2) {
        let c = vector_color(p[0] / scale, p[1] / scale, &wheel);
        rgb.extend_from_slice(&c);
    }
    Ok(rgb)
}

/// Mean end-point error ‖a − b‖ over all pixels.
pub fn epe(a: &FlowField, b: &FlowField) -> Result<f64, FlowError> {
    epe_masked(a, b, None)
}

/// Mean end-point error over the pixels where `mask` (row-major, one per pixel) is true.
/// Returns `NaN` when the mask selects no pixel.
pub fn epe_masked(a: &FlowField, b: &FlowField, mask: Option<&[bool]>) -> Result<f64, FlowError> {
    if a.width != b.width || a.height != b.height {
        return Err(FlowError::SizeMismatch {
            what: "flow fields",
            a_width: a.width,
            a_height: a.height,
            b_width: b.width,
            b_height: b.height,
        });
    }
    let n = a.width * a.height;
    for f in [a, b] {
        if f.data.len() != n * 2 {
            return Err(FlowError::BufferLength {
                what: "flow field",
                width: f.width,
                height: f.height,
                channels: 2,
                len: f.data.len(),
                expected: n * 2,
            });
        }
    }
    if let Some(m) = mask {
        if m.len() != n {
            return Err(FlowError::BufferLength {
                what: "validity mask",
                width: a.width,
                height: a.height,
                channels: 1,
                len: m.len(),
                expected: n,
            });
        }
    }
    let mut sum = 0.0f64;
    let mut count = 0usize;
    for (i, (p, q)) in a
        .data
        .chunks_exact(2)
        .zip(b.data.chunks_exact(2))
        .enumerate()
    {
        if mask.is_some_and(|m| !m[i]) {
            continue;
        }
        let dx = f64::from(p[0]) - f64::from(q[0]);
        let dy = f64::from(p[1]) - f64::from(q[1]);
        sum += (dx * dx + dy * dy).sqrt();
        count += 1;
    }
    Ok(if count == 0 {
        f64::NAN
    } else {
        sum / count as f64
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(w: usize, h: usize, data: Vec<f32>) -> FlowField {
        FlowField::new(w, h, data).expect("flow")
    }

    #[test]
    fn wheel_layout() {
        let w = color_wheel();
        assert_eq!(w.len(), 55);
        assert_eq!(w[0], [255.0, 0.0, 0.0]);
        assert_eq!(w[1], [255.0, 17.0, 0.0]);
        assert_eq!(w[RY], [255.0, 255.0, 0.0]); // yellow
        assert_eq!(w[RY + YG], [0.0, 255.0, 0.0]); // green
        assert_eq!(w[RY + YG + GC], [0.0, 255.0, 255.0]); // cyan
        assert_eq!(w[RY + YG + GC + CB], [0.0, 0.0, 255.0]); // blue
        assert_eq!(w[RY + YG + GC + CB + BM], [255.0, 0.0, 255.0]); // magenta
        assert_eq!(w[54], [255.0, 0.0, 43.0]);
    }

    #[test]
    fn compass_directions_at_unit_magnitude() {
        // Reference values from an independent numpy implementation of RAFT's
        // `flow_viz.flow_to_image` on float32 input. Image axes: x right, y down. (With the
        // exact 1/√2 in float64, NE would give 219: 255·col sits on an integer there.)
        let s = std::f32::consts::FRAC_1_SQRT_2;
        let cases: [((f32, f32), [u8; 3]); 8] = [
            ((1.0, 0.0), [255, 0, 0]),    // E
            ((s, s), [255, 114, 0]),      // SE
            ((0.0, 1.0), [255, 229, 0]),  // S
            ((-s, s), [32, 255, 0]),      // SW
            ((-1.0, 0.0), [0, 209, 255]), // W
            ((-s, -s), [0, 52, 255]),     // NW
            ((0.0, -1.0), [88, 0, 255]),  // N
            ((s, -s), [220, 0, 255]),     // NE
        ];
        let data: Vec<f32> = cases.iter().flat_map(|((u, v), _)| [*u, *v]).collect();
        let rgb = flow_to_rgb(&field(8, 1, data), Some(1.0)).expect("rgb");
        for (i, (dir, want)) in cases.iter().enumerate() {
            assert_eq!(&rgb[3 * i..3 * i + 3], want, "direction {dir:?}");
        }
    }

    #[test]
    fn random_vectors_match_raft() {
        // float32 vectors inside and outside the unit disc; colours from the same numpy
        // reference as above.
        let cases: [((f32, f32), [u8; 3]); 12] = [
            ((-1.077_312_1, -0.684_292_7), [0, 72, 191]),
            ((0.783_313_6, 0.213_621_29), [255, 79, 47]),
            ((-1.055_265_5, -0.173_869_95), [0, 132, 191]),
            ((-0.054_466_624, -0.884_678_8), [97, 28, 255]),
            ((0.609_900_6, -1.004_452_7), [134, 0, 191]),
            ((-0.282_806_7, 0.043_524_474), [182, 250, 255]),
            ((-0.180_367_14, 0.225_676_28), [202, 255, 181]),
            ((0.618_378_2, 1.186_295), [191, 119, 0]),
            ((-0.561_077, 0.386_222_75), [81, 255, 116]),
            ((0.510_161_6, -0.538_926_06), [225, 65, 255]),
            ((-1.296_125_8, 1.230_996_7), [17, 191, 0]),
            ((-0.524_156_8, -0.483_636_4), [73, 116, 255]),
        ];
        let wheel = color_wheel();
        for ((u, v), want) in cases {
            assert_eq!(vector_color(u, v, &wheel), want, "({u}, {v})");
        }
    }

    #[test]
    fn saturation_and_normalisation() {
        let wheel = color_wheel();
        assert_eq!(vector_color(0.0, 0.0, &wheel), [255, 255, 255]);
        assert_eq!(vector_color(0.5, 0.0, &wheel), [255, 127, 127]);
        assert_eq!(vector_color(2.0, 0.0, &wheel), [191, 0, 0]);
        assert_eq!(vector_color(f32::NAN, 0.0, &wheel), [0, 0, 0]);
        // Per-field normalisation: the longest vector is (almost exactly) fully saturated,
        // whatever its length; a zero field is white.
        let rgb = flow_to_rgb(&field(2, 1, vec![40.0, 0.0, 20.0, 0.0]), None).expect("rgb");
        assert_eq!(&rgb[..3], &[255, 0, 0]);
        assert_eq!(&rgb[3..], &[255, 127, 127]);
        let rgb = flow_to_rgb(&FlowField::zeros(3, 2), None).expect("rgb");
        assert!(rgb.iter().all(|&c| c == 255));
        assert!(flow_to_rgb(&FlowField::zeros(1, 1), Some(0.0)).is_err());
        assert!(flow_to_rgb(&field(1, 1, vec![1.0, 1.0]), Some(f32::NAN)).is_err());
    }

    #[test]
    fn end_point_error() {
        let a = field(2, 2, vec![0.0, 0.0, 3.0, 4.0, 1.0, 1.0, -2.0, 0.0]);
        let b = FlowField::zeros(2, 2);
        let all = epe(&a, &b).expect("epe");
        assert!((all - (0.0 + 5.0 + 2f64.sqrt() + 2.0) / 4.0).abs() < 1e-9);
        let m = [false, true, false, true];
        let masked = epe_masked(&a, &b, Some(&m)).expect("masked");
        assert!((masked - 3.5).abs() < 1e-9);
        assert!(epe_masked(&a, &b, Some(&[false; 4]))
            .expect("empty")
            .is_nan());
        assert!(matches!(
            epe(&a, &FlowField::zeros(2, 3)),
            Err(FlowError::SizeMismatch { .. })
        ));
        assert!(matches!(
            epe_masked(&a, &b, Some(&[true; 3])),
            Err(FlowError::BufferLength { .. })
        ));
        let short = FlowField {
            width: 2,
            height: 2,
            data: vec![0.0; 7],
        };
        assert!(matches!(
            epe(&short, &b),
            Err(FlowError::BufferLength { .. })
        ));
    }
}
