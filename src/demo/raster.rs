//! Small anti-aliased rasteriser for RGB24 frames.
//!
//! Every shape is a signed distance function (negative inside, in pixels) that
//! is evaluated only inside the shape's bounding box; coverage is taken from the
//! distance so edges are anti-aliased without supersampling, which keeps a
//! whole figure well under a millisecond per 640×360 frame.

use std::ops::{Add, Mul, Neg, Sub};

/// A 2-D point or vector in pixel (or design) units; +y points down.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct V2 {
    pub x: f32,
    pub y: f32,
}

pub const fn v2(x: f32, y: f32) -> V2 {
    V2 { x, y }
}

impl V2 {
    pub fn dot(self, o: V2) -> f32 {
        self.x * o.x + self.y * o.y
    }

    pub fn len(self) -> f32 {
        self.dot(self).sqrt()
    }

    /// Unit vector; the zero vector stays zero instead of becoming NaN.
    pub fn norm(self) -> V2 {
        let l = self.len();
        if l > 1e-9 {
            self * (1.0 / l)
        } else {
            V2::default()
        }
    }

    /// Rotation by `a` radians; with +y down a positive angle turns clockwise on screen.
    pub fn rot(self, a: f32) -> V2 {
        let (s, c) = a.sin_cos();
        v2(self.x * c - self.y * s, self.x * s + self.y * c)
    }

    /// The vector turned a quarter, `rot(FRAC_PI_2)` without the trigonometry.
    pub fn perp(self) -> V2 {
        v2(-self.y, self.x)
    }

    pub fn lerp(self, o: V2, t: f32) -> V2 {
        self + (o - self) * t
    }

    pub fn angle(a: f32) -> V2 {
        let (s, c) = a.sin_cos();
        v2(c, s)
    }

    pub fn dist(self, o: V2) -> f32 {
        (self - o).len()
    }
}

impl Add for V2 {
    type Output = V2;
    fn add(self, o: V2) -> V2 {
        v2(self.x + o.x, self.y + o.y)
    }
}

impl Sub for V2 {
    type Output = V2;
    fn sub(self, o: V2) -> V2 {
        v2(self.x - o.x, self.y - o.y)
    }
}

impl Mul<f32> for V2 {
    type Output = V2;
    fn mul(self, s: f32) -> V2 {
        v2(self.x * s, self.y * s)
    }
}

impl Neg for V2 {
    type Output = V2;
    fn neg(self) -> V2 {
        v2(-self.x, -self.y)
    }
}

/// A colour with channels in 0..=255, kept as floats so blending needs no conversions.
pub type Rgb = [f32; 3];

pub fn rgb(r: u8, g: u8, b: u8) -> Rgb {
    [r as f32, g as f32, b as f32]
}

/// Multiplies a colour's channels, saturating at white.
pub fn scale(c: Rgb, f: f32) -> Rgb {
    [
        (c[0] * f).min(255.0),
        (c[1] * f).min(255.0),
        (c[2] * f).min(255.0),
    ]
}

pub fn mix(a: Rgb, b: Rgb, t: f32) -> Rgb {
    [
        a[0] + (b[0] - a[0]) * t,
        a[1] + (b[1] - a[1]) * t,
        a[2] + (b[2] - a[2]) * t,
    ]
}

/// How a shape is filled: a flat colour whose band of width `rim` along the
/// outline darkens by up to `rim_dark`, a cheap stand-in for rounded shading.
#[derive(Clone, Copy, Debug)]
pub struct Paint {
    pub color: Rgb,
    pub rim: f32,
    pub rim_dark: f32,
    pub alpha: f32,
}

impl Paint {
    pub fn flat(color: Rgb) -> Self {
        Paint {
            color,
            rim: 0.0,
            rim_dark: 0.0,
            alpha: 1.0,
        }
    }

    pub fn shaded(color: Rgb, rim: f32, rim_dark: f32) -> Self {
        Paint {
            color,
            rim,
            rim_dark,
            alpha: 1.0,
        }
    }

    pub fn alpha(mut self, alpha: f32) -> Self {
        self.alpha = alpha;
        self
    }
}

/// Axis-aligned bounds in pixels, inclusive of partial pixels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rect {
    pub x0: f32,
    pub y0: f32,
    pub x1: f32,
    pub y1: f32,
}

impl Rect {
    pub fn around(c: V2, hx: f32, hy: f32) -> Rect {
        Rect {
            x0: c.x - hx,
            y0: c.y - hy,
            x1: c.x + hx,
            y1: c.y + hy,
        }
    }

    pub fn of_points(pts: &[V2]) -> Rect {
        let mut r = Rect {
            x0: f32::INFINITY,
            y0: f32::INFINITY,
            x1: f32::NEG_INFINITY,
            y1: f32::NEG_INFINITY,
        };
        for p in pts {
            r.x0 = r.x0.min(p.x);
            r.y0 = r.y0.min(p.y);
            r.x1 = r.x1.max(p.x);
            r.y1 = r.y1.max(p.y);
        }
        r
    }

    pub fn grow(self, d: f32) -> Rect {
        Rect {
            x0: self.x0 - d,
            y0: self.y0 - d,
            x1: self.x1 + d,
            y1: self.y1 + d,
        }
    }
}

pub fn sd_circle(p: V2, c: V2, r: f32) -> f32 {
    (p - c).len() - r
}

/// Approximate distance to an ellipse with semi-axes `r` rotated by `angle`.
/// Exact distance needs a quartic; this first-order estimate is accurate near
/// the outline, which is all anti-aliasing looks at.
pub fn sd_ellipse(p: V2, c: V2, r: V2, angle: f32) -> f32 {
    let q = (p - c).rot(-angle);
    let k0 = v2(q.x / r.x, q.y / r.y).len();
    let k1 = v2(q.x / (r.x * r.x), q.y / (r.y * r.y)).len();
    if k1 < 1e-6 {
        -r.x.min(r.y)
    } else {
        k0 * (k0 - 1.0) / k1
    }
}

/// Distance to a segment swept by a radius that varies linearly from `ra` to `rb`.
pub fn sd_capsule(p: V2, a: V2, b: V2, ra: f32, rb: f32) -> f32 {
    let pa = p - a;
    let ba = b - a;
    let bb = ba.dot(ba);
    let t = if bb > 1e-9 {
        (pa.dot(ba) / bb).clamp(0.0, 1.0)
    } else {
        0.0
    };
    (pa - ba * t).len() - (ra + (rb - ra) * t)
}

/// Rounded rectangle centred at `c` with half extents `half`, rotated by `angle`.
pub fn sd_rbox(p: V2, c: V2, half: V2, radius: f32, angle: f32) -> f32 {
    let q = (p - c).rot(-angle);
    let dx = q.x.abs() - half.x + radius;
    let dy = q.y.abs() - half.y + radius;
    let outside = v2(dx.max(0.0), dy.max(0.0)).len();
    outside + dx.max(dy).min(0.0) - radius
}

/// A convex polygon prepared for distance queries: each edge as a point and outward normal.
#[derive(Clone, Copy, Debug)]
pub struct Convex {
    edges: [(V2, V2); Convex::MAX],
    n: usize,
    bounds: Rect,
}

impl Convex {
    pub const MAX: usize = 12;

    /// Builds from vertices in either winding; extra vertices past `MAX` are ignored.
    pub fn new(pts: &[V2]) -> Convex {
        let pts = &pts[..pts.len().min(Convex::MAX)];
        let n = pts.len();
        let mut area = 0.0;
        for i in 0..n {
            let a = pts[i];
            let b = pts[(i + 1) % n];
            area += a.x * b.y - b.x * a.y;
        }
        // The normal's side depends on winding; the signed area says which one points out.
        let sign = if area >= 0.0 { -1.0 } else { 1.0 };
        let mut edges = [(V2::default(), V2::default()); Convex::MAX];
        for (i, e) in edges.iter_mut().enumerate().take(n) {
            let a = pts[i];
            let b = pts[(i + 1) % n];
            *e = (a, (b - a).perp().norm() * sign);
        }
        Convex {
            edges,
            n,
            bounds: Rect::of_points(pts),
        }
    }

    /// Max of half-plane distances: exact inside, mitred outside corners.
    pub fn sd(&self, p: V2) -> f32 {
        let mut d = f32::NEG_INFINITY;
        for &(a, nrm) in &self.edges[..self.n] {
            d = d.max((p - a).dot(nrm));
        }
        d
    }

    pub fn bounds(&self) -> Rect {
        self.bounds
    }
}

/// Side of the pixel tiles `fill_sdf` classifies before touching single pixels.
const TILE: usize = 8;

/// Inclusive pixel block (x0, y0, x1, y1).
type Block = (usize, usize, usize, usize);

enum Cover {
    Outside,
    Inside,
    Edge,
}

struct Fill<'p> {
    paint: &'p Paint,
    inv_rim: f32,
    solid: [u8; TILE * 3],
}

fn blend_row(row: &mut [u8], color: Rgb, alpha: f32) {
    for px in row.chunks_exact_mut(3) {
        for (dst, src) in px.iter_mut().zip(color) {
            let v = *dst as f32 + (src - *dst as f32) * alpha;
            *dst = (v + 0.5).clamp(0.0, 255.0) as u8;
        }
    }
}

/// A mutable view of a row-major RGB24 frame.
pub struct Canvas<'a> {
    px: &'a mut [u8],
    w: usize,
    h: usize,
}

impl<'a> Canvas<'a> {
    /// `None` when the buffer cannot hold `w * h` RGB pixels.
    pub fn new(px: &'a mut [u8], w: u32, h: u32) -> Option<Self> {
        let (w, h) = (w as usize, h as usize);
        if px.len() < w.checked_mul(h)?.checked_mul(3)? {
            return None;
        }
        Some(Canvas { px, w, h })
    }

    pub fn width(&self) -> usize {
        self.w
    }

    pub fn height(&self) -> usize {
        self.h
    }

    pub fn pixel(&self, x: usize, y: usize) -> [u8; 3] {
        let o = (y * self.w + x) * 3;
        [self.px[o], self.px[o + 1], self.px[o + 2]]
    }

    /// Fills whole rows with a vertical gradient from `top` (at `y0`) to `bottom` (at `y1`).
    pub fn gradient_rows(&mut self, y0: f32, y1: f32, top: Rgb, bottom: Rgb) {
        let ya = (y0.floor().max(0.0) as usize).min(self.h);
        let yb = (y1.ceil().max(0.0) as usize).min(self.h);
        let span = (y1 - y0).max(1.0);
        for y in ya..yb {
            let c = mix(top, bottom, ((y as f32 - y0) / span).clamp(0.0, 1.0));
            let c = [c[0] as u8, c[1] as u8, c[2] as u8];
            let row = &mut self.px[y * self.w * 3..(y + 1) * self.w * 3];
            for p in row.chunks_exact_mut(3) {
                p.copy_from_slice(&c);
            }
        }
    }

    /// Blends `paint` over every pixel whose centre lies inside `sdf`, looking only within `bounds`.
    pub fn fill_sdf<F: Fn(V2) -> f32>(&mut self, bounds: Rect, paint: &Paint, sdf: F) {
        if self.w == 0 || self.h == 0 || !(bounds.x0 <= bounds.x1 && bounds.y0 <= bounds.y1) {
            return;
        }
        // One pixel of margin so the anti-aliased fringe outside the shape is not cut off.
        let x0 = (bounds.x0 - 1.0).floor().max(0.0) as usize;
        let y0 = (bounds.y0 - 1.0).floor().max(0.0) as usize;
        let x1 = ((bounds.x1 + 1.0).ceil().max(0.0) as usize).min(self.w - 1);
        let y1 = ((bounds.y1 + 1.0).ceil().max(0.0) as usize).min(self.h - 1);
        if x0 > x1 || y0 > y1 {
            return;
        }
        let inv_rim = if paint.rim > 0.0 {
            1.0 / paint.rim
        } else {
            0.0
        };
        // Tiles let most pixels skip the distance function: a tile whose centre is
        // far enough outside is empty, one far enough inside is a solid fill, and
        // an edge tile is split once more before pixels are evaluated. The
        // distances used are close to 1-Lipschitz; SLACK covers the approximate ones
        // (ellipses, curved hairlines) that change slightly faster than true distance.
        let fill = Fill {
            paint,
            inv_rim,
            solid: {
                // One tile row of the colour, so solid rows are a single copy.
                let c = paint.color.map(|c| c.round().clamp(0.0, 255.0) as u8);
                let mut row = [0u8; TILE * 3];
                for px in row.chunks_exact_mut(3) {
                    px.copy_from_slice(&c);
                }
                row
            },
        };
        for ty in (y0..=y1).step_by(TILE) {
            for tx in (x0..=x1).step_by(TILE) {
                let tile = (tx, ty, (tx + TILE - 1).min(x1), (ty + TILE - 1).min(y1));
                match self.classify(tile, paint, &sdf) {
                    Cover::Outside => {}
                    Cover::Inside => self.fill_solid(tile, &fill),
                    Cover::Edge => {
                        for sy in (tile.1..=tile.3).step_by(TILE / 2) {
                            for sx in (tile.0..=tile.2).step_by(TILE / 2) {
                                let sub = (
                                    sx,
                                    sy,
                                    (sx + TILE / 2 - 1).min(tile.2),
                                    (sy + TILE / 2 - 1).min(tile.3),
                                );
                                match self.classify(sub, paint, &sdf) {
                                    Cover::Outside => {}
                                    Cover::Inside => self.fill_solid(sub, &fill),
                                    Cover::Edge => self.fill_pixels(sub, &fill, &sdf),
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Where a block of pixels (x0, y0, x1, y1 inclusive) lies relative to a shape.
    fn classify<F: Fn(V2) -> f32>(&self, b: Block, paint: &Paint, sdf: &F) -> Cover {
        const SLACK: f32 = 1.5;
        let half = v2((b.2 - b.0) as f32, (b.3 - b.1) as f32) * 0.5;
        let reach = SLACK * half.len() + 0.5;
        let d = sdf(v2(b.0 as f32, b.1 as f32) + half);
        if d > reach {
            Cover::Outside
        } else if d < -(reach + paint.rim) {
            Cover::Inside
        } else {
            Cover::Edge
        }
    }

    fn fill_solid(&mut self, b: Block, f: &Fill) {
        for y in b.1..=b.3 {
            let row = &mut self.px[(y * self.w + b.0) * 3..(y * self.w + b.2 + 1) * 3];
            if f.paint.alpha >= 1.0 {
                row.copy_from_slice(&f.solid[..row.len()]);
            } else {
                blend_row(row, f.paint.color, f.paint.alpha);
            }
        }
    }

    fn fill_pixels<F: Fn(V2) -> f32>(&mut self, b: Block, f: &Fill, sdf: &F) {
        let paint = f.paint;
        for y in b.1..=b.3 {
            let row = y * self.w * 3;
            for x in b.0..=b.2 {
                let d = sdf(v2(x as f32, y as f32));
                if d >= 0.5 {
                    continue;
                }
                let cover = (0.5 - d).min(1.0) * paint.alpha;
                let shade = if f.inv_rim > 0.0 {
                    let t = 1.0 - (-d * f.inv_rim).clamp(0.0, 1.0);
                    1.0 - paint.rim_dark * t * t
                } else {
                    1.0
                };
                let o = row + x * 3;
                let px = &mut self.px[o..o + 3];
                for (dst, src) in px.iter_mut().zip(paint.color) {
                    let v = *dst as f32 + (src * shade - *dst as f32) * cover;
                    *dst = (v + 0.5).clamp(0.0, 255.0) as u8;
                }
            }
        }
    }

    pub fn circle(&mut self, c: V2, r: f32, paint: &Paint) {
        self.fill_sdf(Rect::around(c, r, r), paint, |p| sd_circle(p, c, r));
    }

    pub fn ellipse(&mut self, c: V2, r: V2, angle: f32, paint: &Paint) {
        let (s, co) = angle.sin_cos();
        let hx = ((r.x * co).powi(2) + (r.y * s).powi(2)).sqrt();
        let hy = ((r.x * s).powi(2) + (r.y * co).powi(2)).sqrt();
        self.fill_sdf(Rect::around(c, hx, hy), paint, |p| {
            sd_ellipse(p, c, r, angle)
        });
    }

    pub fn capsule(&mut self, a: V2, b: V2, ra: f32, rb: f32, paint: &Paint) {
        let r = ra.max(rb);
        let bounds = Rect::of_points(&[a, b]).grow(r);
        self.fill_sdf(bounds, paint, |p| sd_capsule(p, a, b, ra, rb));
    }

    /// Capsules along a polyline, one per consecutive pair of points.
    pub fn polyline(&mut self, pts: &[V2], r: f32, paint: &Paint) {
        for w in pts.windows(2) {
            self.capsule(w[0], w[1], r, r, paint);
        }
    }

    pub fn rbox(&mut self, c: V2, half: V2, radius: f32, angle: f32, paint: &Paint) {
        let e = half.len();
        self.fill_sdf(Rect::around(c, e, e), paint, |p| {
            sd_rbox(p, c, half, radius, angle)
        });
    }

    /// A convex polygon whose outline is pushed out by `round` pixels (rounded corners).
    pub fn convex(&mut self, poly: &Convex, round: f32, paint: &Paint) {
        self.fill_sdf(poly.bounds().grow(round), paint, |p| poly.sd(p) - round);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_have_the_right_sign_and_scale() {
        let c = v2(10.0, 10.0);
        assert!((sd_circle(v2(13.0, 14.0), c, 2.0) - 3.0).abs() < 1e-5);
        assert!(sd_ellipse(c, c, v2(5.0, 3.0), 0.3) < 0.0);
        assert!((sd_ellipse(v2(15.0, 10.0), c, v2(5.0, 3.0), 0.0)).abs() < 1e-4);
        assert!(
            (sd_capsule(v2(5.0, 3.0), v2(0.0, 0.0), v2(10.0, 0.0), 1.0, 1.0) - 2.0).abs() < 1e-5
        );
        assert!((sd_rbox(v2(4.0, 0.0), V2::default(), v2(2.0, 1.0), 0.0, 0.0) - 2.0).abs() < 1e-5);
        let sq = Convex::new(&[v2(0.0, 0.0), v2(4.0, 0.0), v2(4.0, 4.0), v2(0.0, 4.0)]);
        let sq_rev = Convex::new(&[v2(0.0, 4.0), v2(4.0, 4.0), v2(4.0, 0.0), v2(0.0, 0.0)]);
        for sd in [sq.sd(v2(2.0, 2.0)), sq_rev.sd(v2(2.0, 2.0))] {
            assert!((sd + 2.0).abs() < 1e-5);
        }
        assert!((sq.sd(v2(6.0, 2.0)) - 2.0).abs() < 1e-5);
    }

    /// The tiled fill must paint exactly what evaluating every pixel would.
    #[test]
    fn tiled_fill_matches_per_pixel_fill() {
        let (w, h) = (97u32, 61u32);
        let paint = Paint::shaded([200.0, 120.0, 40.0], 3.0, 0.4).alpha(0.8);
        let tri = Convex::new(&[v2(5.0, 50.0), v2(60.0, 3.0), v2(90.0, 58.0)]);
        let shapes: Vec<Box<dyn Fn(V2) -> f32>> = vec![
            Box::new(|p| sd_ellipse(p, v2(48.0, 30.0), v2(40.0, 14.0), 0.5)),
            Box::new(|p| sd_capsule(p, v2(4.0, 4.0), v2(90.0, 55.0), 9.0, 4.0)),
            Box::new(|p| sd_rbox(p, v2(50.0, 30.0), v2(30.0, 20.0), 5.0, -0.3)),
            Box::new(move |p| tri.sd(p) - 2.0),
        ];
        for (n, sdf) in shapes.iter().enumerate() {
            let mut tiled = vec![10u8; (w * h * 3) as usize];
            let Some(mut cv) = Canvas::new(&mut tiled, w, h) else {
                panic!("canvas");
            };
            cv.fill_sdf(Rect::around(v2(48.0, 30.0), 60.0, 40.0), &paint, sdf);
            let mut brute = vec![10u8; (w * h * 3) as usize];
            for y in 0..h as usize {
                for x in 0..w as usize {
                    let d = sdf(v2(x as f32, y as f32));
                    if d >= 0.5 {
                        continue;
                    }
                    let cover = (0.5 - d).min(1.0) * paint.alpha;
                    let t = 1.0 - (-d / paint.rim).clamp(0.0, 1.0);
                    let shade = 1.0 - paint.rim_dark * t * t;
                    for c in 0..3 {
                        let o = (y * w as usize + x) * 3 + c;
                        let v =
                            brute[o] as f32 + (paint.color[c] * shade - brute[o] as f32) * cover;
                        brute[o] = (v + 0.5).clamp(0.0, 255.0) as u8;
                    }
                }
            }
            assert!(
                tiled == brute,
                "shape {n} differs between tiled and per-pixel fills"
            );
        }
    }

    #[test]
    fn fill_is_antialiased_and_clipped() {
        let mut buf = vec![0u8; 20 * 10 * 3];
        let Some(mut cv) = Canvas::new(&mut buf, 20, 10) else {
            panic!("buffer sized for the canvas was rejected");
        };
        // Partly off-canvas on purpose: clipping must not panic.
        cv.circle(v2(18.0, 5.0), 4.0, &Paint::flat([255.0, 255.0, 255.0]));
        assert_eq!(cv.pixel(18, 5), [255, 255, 255]);
        assert_eq!(cv.pixel(5, 5), [0, 0, 0]);
        let edge = cv.pixel(14, 5)[0];
        assert!(
            edge > 50 && edge < 220,
            "edge pixel {edge} should be partial"
        );
        assert!(Canvas::new(&mut buf, 21, 10).is_none());
    }
}
