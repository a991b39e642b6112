// Shared by every pane shader (prepended to each by src/render/mod.rs): the uniform block, the
// bindings, a full-viewport triangle and the colormaps. egui-wgpu draws into a non-sRGB target
// and expects gamma-encoded colours, so textures are sampled and written without conversion.

struct Params {
    // The part of the image shown: texture coordinates at the viewport's top-left and
    // bottom-right corners (zoom and pan, the same for every pane).
    uv_min: vec2<f32>,
    uv_max: vec2<f32>,
    // Taylor: per-channel gain; heatmaps: x = gain.
    gain: vec4<f32>,
    // Depth: the values mapped to the two ends of the colormap (near, far).
    range: vec2<f32>,
    // Flow: the vector length drawn at full saturation, in pixels.
    flow_max: f32,
    layers: u32,
    // Pane-specific: Taylor 0 = all channels, 1..3 = one channel; heatmaps 0 = max over the
    // channels, 1 = the channel `layer`.
    mode: u32,
    layer: u32,
    // 0 = gray, 1 = turbo, 2 = inferno.
    colormap: u32,
    _pad: u32,
};

@group(0) @binding(0) var image: texture_2d_array<f32>;
@group(0) @binding(1) var image_sampler: sampler;
@group(0) @binding(2) var<uniform> params: Params;

struct VsOut {
    @builtin(position) position: vec4<f32>,
    @location(0) uv: vec2<f32>,
};

// One triangle that covers the viewport; `uv` runs from uv_min to uv_max across it.
@vertex
fn vs_main(@builtin(vertex_index) i: u32) -> VsOut {
    let corner = vec2<f32>(f32((i << 1u) & 2u), f32(i & 2u));
    var out: VsOut;
    out.position = vec4<f32>(corner.x * 2.0 - 1.0, 1.0 - corner.y * 2.0, 0.0, 1.0);
    out.uv = params.uv_min + corner * (params.uv_max - params.uv_min);
    return out;
}

const BACKGROUND: vec4<f32> = vec4<f32>(0.08, 0.08, 0.09, 1.0);

fn outside(uv: vec2<f32>) -> bool {
    return uv.x < 0.0 || uv.y < 0.0 || uv.x > 1.0 || uv.y > 1.0;
}

fn fetch(uv: vec2<f32>, layer: u32) -> vec4<f32> {
    return textureSampleLevel(image, image_sampler, uv, i32(layer), 0.0);
}

// Turbo (Google, 2019) as the polynomial fit by its authors; `colormap_turbo` in
// src/render/colormap.rs is the same polynomial on the CPU.
fn turbo(t_in: f32) -> vec3<f32> {
    let t = clamp(t_in, 0.0, 1.0);
    let r4 = vec4<f32>(0.13572138, 4.61539260, -42.66032258, 132.13108234);
    let g4 = vec4<f32>(0.09140261, 2.19418839, 4.84296658, -14.18503333);
    let b4 = vec4<f32>(0.10667330, 12.64194608, -60.58204836, 110.36276771);
    let r2 = vec2<f32>(-152.94239396, 59.28637943);
    let g2 = vec2<f32>(4.27729857, 2.82956604);
    let b2 = vec2<f32>(-89.90310912, 27.34824973);
    let v4 = vec4<f32>(1.0, t, t * t, t * t * t);
    let v2 = v4.zw * v4.z;
    return clamp(vec3<f32>(dot(v4, r4) + dot(v2, r2), dot(v4, g4) + dot(v2, g2),
                           dot(v4, b4) + dot(v2, b2)), vec3<f32>(0.0), vec3<f32>(1.0));
}

// Inferno (matplotlib) as the degree-6 polynomial fit by Matt Zucker (shadertoy WlfXRN).
fn inferno(t_in: f32) -> vec3<f32> {
    let t = clamp(t_in, 0.0, 1.0);
    let c0 = vec3<f32>(0.0002189403691192265, 0.001651004631001012, -0.01948089843709184);
    let c1 = vec3<f32>(0.1065134194856116, 0.5639564367884091, 3.932712388889277);
    let c2 = vec3<f32>(11.60249308247187, -3.972853965665698, -15.9423941062914);
    let c3 = vec3<f32>(-41.70399613139459, 17.43639888205313, 44.35414519872813);
    let c4 = vec3<f32>(77.162935699427, -33.40235894210092, -81.80730925738993);
    let c5 = vec3<f32>(-71.31942824499214, 32.62606426397723, 73.20951985803202);
    let c6 = vec3<f32>(25.13112622477341, -12.24266895238567, -23.07032500287172);
    return clamp(c0 + t * (c1 + t * (c2 + t * (c3 + t * (c4 + t * (c5 + t * c6))))),
                 vec3<f32>(0.0), vec3<f32>(1.0));
}

fn colormap(t: f32) -> vec3<f32> {
    switch params.colormap {
        case 1u: { return turbo(t); }
        case 2u: { return inferno(t); }
        default: { return vec3<f32>(clamp(t, 0.0, 1.0)); }
    }
}
