// TEMPORARY until the synth module lands
pub struct DemoConfig {
    pub seed: u64,
    pub videos: usize,
    pub frames_per_video: usize,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
}
impl DemoConfig {
    pub fn standard() -> Self {
        Self {
            seed: 7,
            videos: 6,
            frames_per_video: 1500,
            width: 640,
            height: 360,
            fps: 25,
        }
    }
    pub fn tiny() -> Self {
        Self {
            seed: 7,
            videos: 2,
            frames_per_video: 300,
            width: 640,
            height: 360,
            fps: 25,
        }
    }
}
pub struct Segment {
    pub raw_class: u32,
    pub start: u32,
    pub end: u32,
}
pub struct VideoPlan {
    pub vid: String,
    pub subject: usize,
    pub segments: Vec<Segment>,
    pub n_frames: u32,
}
pub fn plan(cfg: &DemoConfig) -> Vec<VideoPlan> {
    (0..cfg.videos)
        .map(|v| VideoPlan {
            vid: format!("{:04}", v + 1),
            subject: v,
            n_frames: cfg.frames_per_video as u32,
            segments: (0..cfg.frames_per_video as u32 / 30)
                .map(|i| Segment {
                    raw_class: [11, 4, 99, 17][i as usize % 4],
                    start: i * 30,
                    end: i * 30 + 29,
                })
                .collect(),
        })
        .collect()
}
impl VideoPlan {
    pub fn render(&self, i: u32, rgb: &mut [u8]) {
        for (k, b) in rgb.iter_mut().enumerate() {
            *b = ((k as u32 + i) % 251) as u8;
        }
    }
    pub fn keypoints(&self, i: u32) -> [[f32; 3]; 137] {
        let mut k = [[0f32; 3]; 137];
        for (g, p) in k.iter_mut().enumerate() {
            if g % 10 != 3 {
                *p = [10.0 + g as f32 + i as f32 * 0.5, 20.0 + g as f32, 0.8];
            }
        }
        k
    }
}
