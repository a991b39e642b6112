//! The panes' WGSL shaders drawn offscreen through the app's own pipeline (Mesa's lavapipe here)
//! and held to the CPU definitions: the Middlebury flow wheel of `modality::flow_vis`, the
//! colormaps of `render::colormap`, exact pixels at 1:1 and under zoom.
#![cfg(feature = "gui")]

use mgscope::modality::flow::FlowField;
use mgscope::modality::flow_vis::flow_to_rgb;
use mgscope::render::{
    headless_device, render_offscreen, Colormap, PaneImage, PaneKind, PaneParams, RenderError,
};

fn device() -> (wgpu::Device, wgpu::Queue) {
    let (d, q, name) = headless_device().unwrap_or_else(|e| {
        panic!("{e} — scripts/install-system-deps.sh installs mesa-vulkan-drivers")
    });
    eprintln!("adapter: {name}");
    (d, q)
}

/// Largest per-channel difference and the share of channels that differ at all.
fn compare(gpu: &[u8], cpu_rgb: &[u8]) -> (u8, f64) {
    assert_eq!(gpu.len() / 4, cpu_rgb.len() / 3);
    let mut worst = 0u8;
    let mut differing = 0usize;
    for (g, c) in gpu.chunks_exact(4).zip(cpu_rgb.chunks_exact(3)) {
        assert_eq!(g[3], 255);
        for ch in 0..3 {
            let d = g[ch].abs_diff(c[ch]);
            worst = worst.max(d);
            differing += usize::from(d > 0);
        }
    }
    (worst, differing as f64 / cpu_rgb.len() as f64)
}

fn rgb_image(w: u32, h: u32) -> Vec<u8> {
    (0..w * h)
        .flat_map(|i| {
            let (x, y) = (i % w, i / w);
            [
                (x * 7 % 256) as u8,
                (y * 11 % 256) as u8,
                ((x * y + 3) % 256) as u8,
            ]
        })
        .collect()
}

#[test]
fn rgb_pane_is_pixel_exact_at_one_to_one_and_under_zoom() {
    let (dev, q) = device();
    let (w, h) = (37, 21);
    let rgb = rgb_image(w, h);
    let img = PaneImage::Rgb {
        width: w,
        height: h,
        rgb: rgb.clone(),
    };
    let out = render_offscreen(&dev, &q, PaneKind::Rgb, &img, &PaneParams::default(), w, h)
        .expect("render");
    assert_eq!(compare(&out, &rgb), (0, 0.0));

    // 2× zoom on the region starting at pixel (10, 4): each source pixel is a 2×2 block.
    let (zw, zh) = (16u32, 10u32);
    let p = PaneParams {
        uv_min: [10.0 / w as f32, 4.0 / h as f32],
        uv_max: [
            (10.0 + zw as f32 / 2.0) / w as f32,
            (4.0 + zh as f32 / 2.0) / h as f32,
        ],
        ..Default::default()
    };
    let out = render_offscreen(&dev, &q, PaneKind::Rgb, &img, &p, zw, zh).expect("render");
    for y in 0..zh as usize {
        for x in 0..zw as usize {
            let src = ((4 + y / 2) * w as usize + 10 + x / 2) * 3;
            let dst = (y * zw as usize + x) * 4;
            assert_eq!(&out[dst..dst + 3], &rgb[src..src + 3], "pixel ({x}, {y})");
        }
    }

    // Panned past the image's edge: the background, not a smeared border.
    let p = PaneParams {
        uv_min: [1.5, 1.5],
        uv_max: [2.0, 2.0],
        ..Default::default()
    };
    let out = render_offscreen(&dev, &q, PaneKind::Rgb, &img, &p, 8, 8).expect("render");
    assert!(
        out.chunks_exact(4).all(|px| px[..3] == [20, 20, 23]),
        "{:?}",
        &out[..4]
    );
}

#[test]
fn flow_pane_matches_the_cpu_colour_wheel() {
    let (dev, q) = device();
    let (w, h) = (64u32, 48u32);
    // Every direction and lengths from 0 to 1.5× the maximum, on values a half float holds
    // exactly (multiples of 1/16 below 64), so the texture does not move them.
    let mut uv = Vec::with_capacity((w * h * 2) as usize);
    for y in 0..h {
        for x in 0..w {
            let (dx, dy) = (x as f32 - 31.5, y as f32 - 23.5);
            uv.push((dx * 4.0).round() / 16.0);
            uv.push((dy * 4.0).round() / 16.0);
        }
    }
    let field = FlowField::new(w as usize, h as usize, uv.clone()).expect("field");
    let max = 6.0;
    let cpu = flow_to_rgb(&field, Some(max)).expect("cpu wheel");
    let p = PaneParams {
        flow_max: max,
        ..Default::default()
    };
    let img = PaneImage::Flow {
        width: w,
        height: h,
        uv,
    };
    let out = render_offscreen(&dev, &q, PaneKind::Flow, &img, &p, w, h).expect("render");
    let (worst, share) = compare(&out, &cpu);
    // The GPU's atan2 and f32 mixing may put a floor one level lower on a boundary.
    assert!(worst <= 1, "worst channel difference {worst}");
    assert!(share < 0.02, "{:.2}% of channels differ", share * 100.0);
}

#[test]
fn depth_and_heatmap_panes_follow_the_cpu_colormaps() {
    let (dev, q) = device();
    let (w, h) = (32u32, 8u32);
    let data: Vec<u8> = (0..w * h).map(|i| (i % 256) as u8).collect();
    for cm in Colormap::ALL {
        let p = PaneParams {
            colormap: cm,
            range: [0.25, 0.75],
            ..Default::default()
        };
        let img = PaneImage::Gray {
            width: w,
            height: h,
            data: data.clone(),
        };
        let out = render_offscreen(&dev, &q, PaneKind::Depth, &img, &p, w, h).expect("render");
        let cpu: Vec<u8> = data
            .iter()
            .flat_map(|&d| {
                let t = (f32::from(d) / 255.0 - 0.25) / 0.5;
                cm.map(t).map(|c| (c * 255.0).round() as u8)
            })
            .collect();
        let (worst, _) = compare(&out, &cpu);
        assert!(worst <= 1, "{}: worst {worst}", cm.name());
    }

    // Three heatmap channels: the max over them, then one channel alone, with a gain.
    let layers = 3u32;
    let stack: Vec<u8> = (0..layers * w * h)
        .map(|i| ((i * 37 + (i / (w * h)) * 91) % 256) as u8)
        .collect();
    let img = PaneImage::Stack {
        width: w,
        height: h,
        layers,
        data: stack.clone(),
    };
    let px = (w * h) as usize;
    let gray = PaneParams {
        colormap: Colormap::Gray,
        ..Default::default()
    };
    let out = render_offscreen(&dev, &q, PaneKind::Joint, &img, &gray, w, h).expect("render");
    let max: Vec<u8> = (0..px)
        .flat_map(|i| {
            let m = (0..layers as usize)
                .map(|c| stack[c * px + i])
                .max()
                .unwrap_or(0);
            [m, m, m]
        })
        .collect();
    assert_eq!(compare(&out, &max).0, 0);
    let one = PaneParams {
        mode: 1,
        layer: 2,
        gain: [2.0, 1.0, 1.0, 1.0],
        ..gray
    };
    let out = render_offscreen(&dev, &q, PaneKind::Limb, &img, &one, w, h).expect("render");
    let chan: Vec<u8> = stack[2 * px..3 * px]
        .iter()
        .flat_map(|&v| {
            let g = (f32::from(v) / 255.0 * 2.0).min(1.0);
            let g = (g * 255.0).round() as u8;
            [g, g, g]
        })
        .collect();
    assert!(compare(&out, &chan).0 <= 1);
}

#[test]
fn taylor_pane_applies_per_channel_gain_and_single_channel_view() {
    let (dev, q) = device();
    let (w, h) = (20u32, 10u32);
    let rgb = rgb_image(w, h);
    let img = PaneImage::Rgb {
        width: w,
        height: h,
        rgb: rgb.clone(),
    };
    let p = PaneParams {
        gain: [1.0, 0.5, 2.0, 1.0],
        ..Default::default()
    };
    let out = render_offscreen(&dev, &q, PaneKind::Taylor, &img, &p, w, h).expect("render");
    let cpu: Vec<u8> = rgb
        .chunks_exact(3)
        .flat_map(|c| {
            let g = |v: u8, k: f32| ((f32::from(v) / 255.0 * k).min(1.0) * 255.0).round() as u8;
            [g(c[0], 1.0), g(c[1], 0.5), g(c[2], 2.0)]
        })
        .collect();
    assert!(compare(&out, &cpu).0 <= 1);

    let p = PaneParams {
        mode: 2,
        colormap: Colormap::Gray,
        ..Default::default()
    };
    let out = render_offscreen(&dev, &q, PaneKind::Taylor, &img, &p, w, h).expect("render");
    let green: Vec<u8> = rgb.chunks_exact(3).flat_map(|c| [c[1]; 3]).collect();
    assert_eq!(compare(&out, &green).0, 0);
}

#[test]
fn a_malformed_pane_image_is_an_error_not_a_panic() {
    let (dev, q) = device();
    let img = PaneImage::Rgb {
        width: 4,
        height: 4,
        rgb: vec![0; 10],
    };
    let err = render_offscreen(&dev, &q, PaneKind::Rgb, &img, &PaneParams::default(), 4, 4)
        .expect_err("short buffer");
    assert!(
        matches!(
            err,
            RenderError::BadImage {
                len: 10,
                expected: 48,
                ..
            }
        ),
        "{err}"
    );
    let empty = PaneImage::Stack {
        width: 4,
        height: 4,
        layers: 0,
        data: vec![],
    };
    assert!(matches!(empty.validate(), Err(RenderError::Empty { .. })));
}
