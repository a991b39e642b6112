//! GPU rendering of the modality panes: one WGSL shader per pane kind (`shaders/`), one texture
//! and uniform block per pane. Kept apart from egui (as Rerun keeps its renderer apart from its
//! views): the app composites a pane through an egui paint callback (`app::panes`), and
//! [`render_offscreen`] draws the same pipeline into a texture for tests and snapshots.

pub mod colormap;

use std::collections::HashMap;

pub use colormap::Colormap;

const COMMON_WGSL: &str = include_str!("../../shaders/common.wgsl");

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("no GPU adapter (wgpu found none; on a headless Linux machine install Mesa's Vulkan driver, mesa-vulkan-drivers): {0}")]
    NoAdapter(String),
    #[error("the GPU device could not be created: {0}")]
    Device(String),
    #[error(
        "pane image {what}: {len} bytes/values, expected {expected} for {width}×{height}×{layers}"
    )]
    BadImage {
        what: &'static str,
        width: u32,
        height: u32,
        layers: u32,
        len: usize,
        expected: usize,
    },
    #[error("pane image is empty ({width}×{height}×{layers})")]
    Empty {
        width: u32,
        height: u32,
        layers: u32,
    },
    #[error("reading the rendered image back failed: {0}")]
    Readback(String),
}

pub type Result<T> = std::result::Result<T, RenderError>;

/// The six panes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum PaneKind {
    Rgb,
    Flow,
    Depth,
    Taylor,
    Joint,
    Limb,
}

impl PaneKind {
    pub const ALL: [PaneKind; 6] = [
        PaneKind::Rgb,
        PaneKind::Flow,
        PaneKind::Depth,
        PaneKind::Taylor,
        PaneKind::Joint,
        PaneKind::Limb,
    ];

    pub fn name(self) -> &'static str {
        match self {
            PaneKind::Rgb => "RGB",
            PaneKind::Flow => "optical flow",
            PaneKind::Depth => "depth",
            PaneKind::Taylor => "Taylor",
            PaneKind::Joint => "joint heatmap",
            PaneKind::Limb => "limb heatmap",
        }
    }

    fn shader(self) -> &'static str {
        match self {
            PaneKind::Rgb => include_str!("../../shaders/rgb.wgsl"),
            PaneKind::Flow => include_str!("../../shaders/flow.wgsl"),
            PaneKind::Depth => include_str!("../../shaders/depth.wgsl"),
            PaneKind::Taylor => include_str!("../../shaders/taylor.wgsl"),
            PaneKind::Joint | PaneKind::Limb => include_str!("../../shaders/heatmap.wgsl"),
        }
    }
}

/// What a pane's texture holds.
#[derive(Debug, Clone)]
pub enum PaneImage {
    /// RGB24 pixels (RGB frames, Taylor frames), uploaded as RGBA8.
    Rgb {
        width: u32,
        height: u32,
        rgb: Vec<u8>,
    },
    /// A flow field `[H, W, 2]` in pixels, uploaded as half floats (filterable everywhere).
    Flow {
        width: u32,
        height: u32,
        uv: Vec<f32>,
    },
    /// One 8-bit channel (depth).
    Gray {
        width: u32,
        height: u32,
        data: Vec<u8>,
    },
    /// `layers` 8-bit channels `[C, H, W]` (heatmap volumes), one texture layer each.
    Stack {
        width: u32,
        height: u32,
        layers: u32,
        data: Vec<u8>,
    },
}

impl PaneImage {
    pub fn size(&self) -> (u32, u32) {
        match self {
            PaneImage::Rgb { width, height, .. }
            | PaneImage::Flow { width, height, .. }
            | PaneImage::Gray { width, height, .. }
            | PaneImage::Stack { width, height, .. } => (*width, *height),
        }
    }

    fn layers(&self) -> u32 {
        match self {
            PaneImage::Stack { layers, .. } => *layers,
            _ => 1,
        }
    }

    fn format(&self) -> wgpu::TextureFormat {
        match self {
            PaneImage::Rgb { .. } => wgpu::TextureFormat::Rgba8Unorm,
            PaneImage::Flow { .. } => wgpu::TextureFormat::Rgba16Float,
            PaneImage::Gray { .. } | PaneImage::Stack { .. } => wgpu::TextureFormat::R8Unorm,
        }
    }

    /// Checks the buffer against the size, so a bad image is an error here and never a wgpu
    /// validation panic later.
    pub fn validate(&self) -> Result<()> {
        let (w, h) = self.size();
        let layers = self.layers();
        if w == 0 || h == 0 || layers == 0 {
            return Err(RenderError::Empty {
                width: w,
                height: h,
                layers,
            });
        }
        let px = w as usize * h as usize * layers as usize;
        let (what, len, expected) = match self {
            PaneImage::Rgb { rgb, .. } => ("rgb", rgb.len(), px * 3),
            PaneImage::Flow { uv, .. } => ("flow", uv.len(), px * 2),
            PaneImage::Gray { data, .. } => ("gray", data.len(), px),
            PaneImage::Stack { data, .. } => ("stack", data.len(), px),
        };
        if len != expected {
            return Err(RenderError::BadImage {
                what,
                width: w,
                height: h,
                layers,
                len,
                expected,
            });
        }
        Ok(())
    }

    /// The bytes for the texture and the bytes per row of one layer.
    fn texels(&self) -> (Vec<u8>, u32) {
        match self {
            PaneImage::Rgb { width, rgb, .. } => {
                let mut out = Vec::with_capacity(rgb.len() / 3 * 4);
                for p in rgb.chunks_exact(3) {
                    out.extend_from_slice(&[p[0], p[1], p[2], 255]);
                }
                (out, width * 4)
            }
            PaneImage::Flow { width, uv, .. } => {
                let mut out = Vec::with_capacity(uv.len() * 4);
                for p in uv.chunks_exact(2) {
                    for v in [p[0], p[1], 0.0, 0.0] {
                        out.extend_from_slice(&half::f16::from_f32(v).to_le_bytes());
                    }
                }
                (out, width * 8)
            }
            PaneImage::Gray { width, data, .. } | PaneImage::Stack { width, data, .. } => {
                (data.clone(), *width)
            }
        }
    }
}

/// A pane's drawing parameters: the uniform block of `shaders/common.wgsl`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PaneParams {
    /// The image region shown, in texture coordinates (top-left, bottom-right).
    pub uv_min: [f32; 2],
    pub uv_max: [f32; 2],
    pub gain: [f32; 4],
    /// Depth: (near, far) in [0, 1].
    pub range: [f32; 2],
    /// Flow: length in pixels drawn at full saturation.
    pub flow_max: f32,
    pub mode: u32,
    pub layer: u32,
    pub colormap: Colormap,
}

impl Default for PaneParams {
    fn default() -> Self {
        PaneParams {
            uv_min: [0.0, 0.0],
            uv_max: [1.0, 1.0],
            gain: [1.0; 4],
            range: [0.0, 1.0],
            flow_max: 1.0,
            mode: 0,
            layer: 0,
            colormap: Colormap::Turbo,
        }
    }
}

const PARAMS_BYTES: u64 = 64;

impl PaneParams {
    fn bytes(&self, layers: u32) -> [u8; PARAMS_BYTES as usize] {
        let mut b = [0u8; PARAMS_BYTES as usize];
        let mut put = |i: usize, v: [u8; 4]| b[i * 4..i * 4 + 4].copy_from_slice(&v);
        let floats = [
            self.uv_min[0],
            self.uv_min[1],
            self.uv_max[0],
            self.uv_max[1],
            self.gain[0],
            self.gain[1],
            self.gain[2],
            self.gain[3],
            self.range[0],
            self.range[1],
            self.flow_max,
        ];
        for (i, f) in floats.iter().enumerate() {
            put(i, f.to_le_bytes());
        }
        put(11, layers.to_le_bytes());
        put(12, self.mode.to_le_bytes());
        put(13, self.layer.to_le_bytes());
        put(14, self.colormap.index().to_le_bytes());
        b
    }
}

struct GpuPane {
    texture: wgpu::Texture,
    bind_group: wgpu::BindGroup,
    uniform: wgpu::Buffer,
    layers: u32,
    /// The caller's name for the image now in the texture.
    stamp: u64,
}

/// Pipelines for one colour target format and the panes' GPU resources, by pane id.
pub struct PaneRenderer {
    pipelines: HashMap<PaneKind, wgpu::RenderPipeline>,
    layout: wgpu::BindGroupLayout,
    sampler: wgpu::Sampler,
    panes: HashMap<u64, GpuPane>,
}

impl PaneRenderer {
    pub fn new(device: &wgpu::Device, target: wgpu::TextureFormat) -> PaneRenderer {
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("mgscope-pane"),
            entries: &[
                wgpu::BindGroupLayoutEntry {
                    binding: 0,
                    visibility: wgpu::ShaderStages::FRAGMENT,
                    ty: wgpu::BindingType::Texture {
                        sample_type: wgpu::TextureSampleType::Float { filterable: true },
                        view_dimension: wgpu::TextureViewDimension::D2Array,
                        multisampled: false,
                    },
                    count: None,
                },
                wgpu::BindGroupLayoutEntry {
                    binding: 1,
                    visibility: wgpu::ShaderStages::FRAGMENT,
                    ty: wgpu::BindingType::Sampler(wgpu::SamplerBindingType::Filtering),
                    count: None,
                },
                wgpu::BindGroupLayoutEntry {
                    binding: 2,
                    visibility: wgpu::ShaderStages::VERTEX | wgpu::ShaderStages::FRAGMENT,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: false,
                        min_binding_size: std::num::NonZeroU64::new(PARAMS_BYTES),
                    },
                    count: None,
                },
            ],
        });
        // Zoomed in, a researcher wants to see the pixels themselves; zoomed out, smoothing.
        let sampler = device.create_sampler(&wgpu::SamplerDescriptor {
            label: Some("mgscope-pane"),
            mag_filter: wgpu::FilterMode::Nearest,
            min_filter: wgpu::FilterMode::Linear,
            ..Default::default()
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("mgscope-pane"),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let mut pipelines = HashMap::new();
        for kind in PaneKind::ALL {
            let source = format!("{COMMON_WGSL}\n{}", kind.shader());
            let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(kind.name()),
                source: wgpu::ShaderSource::Wgsl(source.into()),
            });
            let pipeline = device.create_render_pipeline(&wgpu::RenderPipelineDescriptor {
                label: Some(kind.name()),
                layout: Some(&pipeline_layout),
                vertex: wgpu::VertexState {
                    module: &module,
                    entry_point: Some("vs_main"),
                    buffers: &[],
                    compilation_options: Default::default(),
                },
                primitive: wgpu::PrimitiveState::default(),
                depth_stencil: None,
                multisample: wgpu::MultisampleState::default(),
                fragment: Some(wgpu::FragmentState {
                    module: &module,
                    entry_point: Some("fs_main"),
                    targets: &[Some(wgpu::ColorTargetState {
                        format: target,
                        blend: None,
                        write_mask: wgpu::ColorWrites::ALL,
                    })],
                    compilation_options: Default::default(),
                }),
                multiview_mask: None,
                cache: None,
            });
            pipelines.insert(kind, pipeline);
        }
        PaneRenderer {
            pipelines,
            layout,
            sampler,
            panes: HashMap::new(),
        }
    }

    /// Uploads `image` as pane `id`'s texture, reallocating only when its size or format
    /// changes (stepping through a clip reuses one texture). `stamp` names the image, so a
    /// caller can skip the upload of an image already there ([`PaneRenderer::stamp`]).
    pub fn upload(
        &mut self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        id: u64,
        image: &PaneImage,
        stamp: u64,
    ) -> Result<()> {
        image.validate()?;
        let (w, h) = image.size();
        let layers = image.layers();
        let size = wgpu::Extent3d {
            width: w,
            height: h,
            depth_or_array_layers: layers,
        };
        let format = image.format();
        let reuse = self
            .panes
            .get(&id)
            .is_some_and(|p| p.texture.size() == size && p.texture.format() == format);
        if !reuse {
            let texture = device.create_texture(&wgpu::TextureDescriptor {
                label: Some("mgscope-pane"),
                size,
                mip_level_count: 1,
                sample_count: 1,
                dimension: wgpu::TextureDimension::D2,
                format,
                usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
                view_formats: &[],
            });
            let view = texture.create_view(&wgpu::TextureViewDescriptor {
                dimension: Some(wgpu::TextureViewDimension::D2Array),
                ..Default::default()
            });
            let uniform = device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("mgscope-pane"),
                size: PARAMS_BYTES,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("mgscope-pane"),
                layout: &self.layout,
                entries: &[
                    wgpu::BindGroupEntry {
                        binding: 0,
                        resource: wgpu::BindingResource::TextureView(&view),
                    },
                    wgpu::BindGroupEntry {
                        binding: 1,
                        resource: wgpu::BindingResource::Sampler(&self.sampler),
                    },
                    wgpu::BindGroupEntry {
                        binding: 2,
                        resource: uniform.as_entire_binding(),
                    },
                ],
            });
            self.panes.insert(
                id,
                GpuPane {
                    texture,
                    bind_group,
                    uniform,
                    layers,
                    stamp,
                },
            );
        }
        let Some(pane) = self.panes.get_mut(&id) else {
            return Ok(());
        };
        pane.stamp = stamp;
        let (bytes, row) = image.texels();
        queue.write_texture(
            wgpu::TexelCopyTextureInfo {
                texture: &pane.texture,
                mip_level: 0,
                origin: wgpu::Origin3d::ZERO,
                aspect: wgpu::TextureAspect::All,
            },
            &bytes,
            wgpu::TexelCopyBufferLayout {
                offset: 0,
                bytes_per_row: Some(row),
                rows_per_image: Some(h),
            },
            size,
        );
        Ok(())
    }

    /// Writes pane `id`'s parameters; a pane with no image yet is left alone.
    pub fn set_params(&self, queue: &wgpu::Queue, id: u64, params: &PaneParams) {
        if let Some(p) = self.panes.get(&id) {
            queue.write_buffer(&p.uniform, 0, &params.bytes(p.layers));
        }
    }

    /// The stamp of the image pane `id` shows, if any.
    pub fn stamp(&self, id: u64) -> Option<u64> {
        self.panes.get(&id).map(|p| p.stamp)
    }

    /// Drops the resources of panes not in `keep` (closed clips, hidden panes).
    pub fn retain(&mut self, keep: impl Fn(u64) -> bool) {
        self.panes.retain(|id, _| keep(*id));
    }

    /// Draws pane `id` over the pass's current viewport.
    pub fn draw(&self, pass: &mut wgpu::RenderPass<'_>, id: u64, kind: PaneKind) {
        let (Some(p), Some(pipeline)) = (self.panes.get(&id), self.pipelines.get(&kind)) else {
            return;
        };
        pass.set_pipeline(pipeline);
        pass.set_bind_group(0, &p.bind_group, &[]);
        pass.draw(0..3, 0..1);
    }
}

/// A headless device (Mesa's lavapipe on a machine without a GPU).
pub fn headless_device() -> Result<(wgpu::Device, wgpu::Queue, String)> {
    // Vulkan/Metal/DX12 only: the GL backend probes a display server first and, headless,
    // prints errors before it gives up.
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends: wgpu::Backends::PRIMARY,
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    });
    let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
        power_preference: wgpu::PowerPreference::LowPower,
        force_fallback_adapter: false,
        compatible_surface: None,
        ..Default::default()
    }))
    .map_err(|e| RenderError::NoAdapter(e.to_string()))?;
    let name = adapter.get_info().name;
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some("mgscope-offscreen"),
        ..Default::default()
    }))
    .map_err(|e| RenderError::Device(e.to_string()))?;
    Ok((device, queue, name))
}

/// Renders one pane into a `width`×`height` RGBA8 image with the app's pipeline.
pub fn render_offscreen(
    device: &wgpu::Device,
    queue: &wgpu::Queue,
    kind: PaneKind,
    image: &PaneImage,
    params: &PaneParams,
    width: u32,
    height: u32,
) -> Result<Vec<u8>> {
    let format = wgpu::TextureFormat::Rgba8Unorm;
    let mut renderer = PaneRenderer::new(device, format);
    renderer.upload(device, queue, 0, image, 0)?;
    renderer.set_params(queue, 0, params);
    let target = device.create_texture(&wgpu::TextureDescriptor {
        label: Some("mgscope-offscreen"),
        size: wgpu::Extent3d {
            width,
            height,
            depth_or_array_layers: 1,
        },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format,
        usage: wgpu::TextureUsages::RENDER_ATTACHMENT | wgpu::TextureUsages::COPY_SRC,
        view_formats: &[],
    });
    let view = target.create_view(&Default::default());
    // Rows of a texture-to-buffer copy are padded to 256 bytes.
    let row = (width * 4).div_ceil(256) * 256;
    let readback = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("mgscope-readback"),
        size: u64::from(row) * u64::from(height),
        usage: wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::MAP_READ,
        mapped_at_creation: false,
    });
    let mut encoder = device.create_command_encoder(&Default::default());
    {
        let mut pass = encoder.begin_render_pass(&wgpu::RenderPassDescriptor {
            label: Some("mgscope-offscreen"),
            color_attachments: &[Some(wgpu::RenderPassColorAttachment {
                view: &view,
                depth_slice: None,
                resolve_target: None,
                ops: wgpu::Operations {
                    load: wgpu::LoadOp::Clear(wgpu::Color::BLACK),
                    store: wgpu::StoreOp::Store,
                },
            })],
            depth_stencil_attachment: None,
            timestamp_writes: None,
            occlusion_query_set: None,
            multiview_mask: None,
        });
        renderer.draw(&mut pass, 0, kind);
    }
    encoder.copy_texture_to_buffer(
        wgpu::TexelCopyTextureInfo {
            texture: &target,
            mip_level: 0,
            origin: wgpu::Origin3d::ZERO,
            aspect: wgpu::TextureAspect::All,
        },
        wgpu::TexelCopyBufferInfo {
            buffer: &readback,
            layout: wgpu::TexelCopyBufferLayout {
                offset: 0,
                bytes_per_row: Some(row),
                rows_per_image: Some(height),
            },
        },
        target.size(),
    );
    queue.submit([encoder.finish()]);
    let slice = readback.slice(..);
    let (tx, rx) = std::sync::mpsc::channel();
    slice.map_async(wgpu::MapMode::Read, move |r| {
        let _ = tx.send(r);
    });
    device
        .poll(wgpu::PollType::wait_indefinitely())
        .map_err(|e| RenderError::Readback(e.to_string()))?;
    rx.recv()
        .map_err(|e| RenderError::Readback(e.to_string()))?
        .map_err(|e| RenderError::Readback(e.to_string()))?;
    let mapped = slice
        .get_mapped_range()
        .map_err(|e| RenderError::Readback(e.to_string()))?;
    let mut out = Vec::with_capacity(width as usize * height as usize * 4);
    for y in 0..height as usize {
        let start = y * row as usize;
        out.extend_from_slice(&mapped[start..start + width as usize * 4]);
    }
    drop(mapped);
    readback.unmap();
    Ok(out)
}
